"""Tables and figures from stored results; nothing here trains or imports torch."""
