"""Everything between a decision and the hub: the event document, the durable spool, MQTT.

``events`` (the JSON a subscriber reads), ``spool`` (SQLite, written before publishing),
``topics`` and ``discovery`` (every topic name; Home Assistant discovery), ``credentials``
(password and TLS from configuration), ``overrides`` (the ``run`` flags that override
``[mqtt]``), ``payloads`` (JSON as it goes on the wire), ``publisher`` (connection and sender
thread), ``requests`` (the verify and check_image commands), ``local_broker`` (demo only).
"""
