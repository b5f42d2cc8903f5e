"""The fate of one transaction: `GET /transactions/{transaction_id}`."""
