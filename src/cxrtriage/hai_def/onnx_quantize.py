"""onnxruntime dynamic int8 quantisation (QInt8 weights), the scheme used for every SigLIP export."""

from __future__ import annotations

import logging
from pathlib import Path


class _DropPreprocessHint(logging.Filter):
    """onnxruntime's quantiser logs "Please consider to run pre-processing before quantization" on the root logger
    for every call; that advice targets static quantisation of CNNs, so it is only noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_dynamic_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """onnxruntime dynamic int8 (QInt8 weights), the transformer-friendly scheme used for every SigLIP export."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(hint)
    return Path(int8_path)
