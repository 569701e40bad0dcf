"""The WeChat boundary: callback parsing and crypto, the outbound API client, the outbox."""
