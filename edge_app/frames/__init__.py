"""The frame path's first steps: a frame source, the face detector, and the face crop.

``sources/`` yields frames (camera, files, the built-in sample, synthetic), ``detector``
finds faces in a frame (BlazeFace), ``crop`` cuts each face out at a model's context scale.
"""
