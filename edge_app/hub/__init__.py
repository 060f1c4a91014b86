"""Everything between a decision and the hub: the event document, the durable spool, MQTT.

``events`` (the JSON a subscriber reads), ``spool`` (SQLite, written before publishing),
``topics`` (every topic name, and the checks on them), ``discovery`` (Home Assistant),
``credentials`` (password and TLS from configuration), ``overrides`` (the ``run`` flags that
override ``[mqtt]``), ``payloads`` (JSON as it goes on the wire), ``connection`` (paho's client
and why a connection failed), ``publisher`` (the sender thread: spool -> broker, retained
state and health), ``commands`` (the verify and check_image requests), ``local_broker`` (demo).
"""
