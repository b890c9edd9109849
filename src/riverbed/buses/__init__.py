"""The message buses ``riverbed connect`` reads (docs/connectors.md): one module each, every
one a :class:`riverbed.connect.Bus`; :func:`riverbed.connect.open_bus` picks one by URL."""
