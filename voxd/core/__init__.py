"""What several layers share, so none of them has to import another sideways or upward:

- ``calllog``: the call log record (a call's turns, tool calls, digits, end reason),
  filled in by the session, persisted by the store, exposed by the API and webhooks;
- ``errors``: the error taxonomy the API maps to HTTP once, at its boundary;
- ``signing``: Standard Webhooks signatures (webhooks, HTTP functions, lookups);
- ``redact``: keeping secrets out of logs, the execution log and events;
- ``pii``: personal data (cards, SSNs, emails, phone numbers, own patterns) out of what is
  written: the detectors, pure; the store applies them (``voxd.store.scrub``).

``voxd.core`` imports nothing else of voxd.
"""
