"""Local stand-ins for Zendesk and Jira: Flask apps with in-memory, seeded state, fault switches and
``/_sandbox`` inspection endpoints. ``server.start()`` runs both on free ports; ``escalate sandbox`` does
the same from the command line (``cli.register``)."""
