"""Notifications: the outbox rows the classifier writes, and their delivery to Telegram."""
