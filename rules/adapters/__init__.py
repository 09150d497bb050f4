"""Adapters from a helpdesk's own API shapes to the helpdesk-neutral case model."""
