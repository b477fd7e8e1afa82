"""SMS gateways (Twilio first) and delivery status callbacks."""
