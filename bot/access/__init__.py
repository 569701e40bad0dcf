"""Staff accounts for the console and the JSON API: passwords, login sessions, API
tokens and failed-login throttling. Stored in the database (storage/models.py); never
imports the WeChat boundary or aiohttp."""
