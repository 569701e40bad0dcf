"""Resident dialogs. bot/dialogs/registry.py is the one place that maps each WeChat
message type, event, menu key and command to its handler."""
