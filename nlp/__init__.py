"""Routing intelligence: taxonomy, jieba keyword tagging, urgency and place."""
