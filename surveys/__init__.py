"""Surveys: questionnaires defined in config/surveys/, pushed to sampled residents."""
