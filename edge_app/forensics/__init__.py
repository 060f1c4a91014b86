"""The still-image path: is this photo manipulated, and where?

    image ─▶ loading (strict decode, size guards) ─▶ copy-move search + verification
          ─▶ [ELA + wavelet features ─▶ patch CNN] ─▶ calibrated scores ─▶ verdict, regions, heatmap

``check`` (one image in, one result out; ``check_image_bytes`` for MQTT's cmd/check_image),
``analyzer`` (the model, its metadata's thresholds, evidence and verdict), ``loading`` (file or
bytes to the analysed RGB array, size guards), ``errors`` (``ForensicsError``), ``jpeg_quality``
(quality from the quantization table), ``features`` (the CNN's recompressed ELA + residual
planes, relative normalisation), ``patches`` (patch grid, heatmap assembly, ELA statistic),
``scores`` (aggregation and calibration), ``results`` (the result dict, RLE masks),
``heatmap`` (the rendered picture and region mask); copy-move: ``copy_move`` (block
matching), ``keypoint_copy_move`` (SIFT + RANSAC, optional OpenCV), ``copy_move_search``
(both on a fixed-size analysis image), ``copy_move_verify`` (dense pixel-by-pixel check).
"""
