"""The embedded ``transformers`` engine: settings, loading, the model state (α set in place) and the
language model that answers evaluation requests (greedy decoding with a tie guard, scoring).

Importing this package imports no torch; its modules do.
"""
