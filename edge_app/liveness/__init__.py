"""From a face crop to a decision: the liveness models, their score fusion, and the fail-closed decision.

``scorer`` runs every liveness model on a face and fuses their scores, ``decision`` turns a
window of per-frame scores into live/attack/uncertain/no_face/error, ``decision_log`` writes
the line a person reads for each decision and the periodic status line. ``stills`` scores
image files through the same path (``edge-app liveness``), ``annotate`` draws face boxes,
scores and decisions on images (``--annotate``).
"""
