#!/usr/bin/env bash
# Convert a local MedGemma checkpoint (e.g. google/medgemma-4b-it, downloaded with its licence accepted) into
# the two GGUF files llama.cpp needs: the text model and the vision projector (mmproj), then optionally
# quantise the text model to Q4_K_M (~2.5 GB) with llama.cpp's quantiser (llama-cpp-python bindings).
#
# Usage: scripts/convert_medgemma_gguf.sh HF_DIR OUT_DIR [CONVERTER]
#   HF_DIR     local Hugging Face checkpoint (config.json, *.safetensors, tokenizer.model, ...)
#   OUT_DIR    where model-f16.gguf, mmproj-f16.gguf (and model-Q4_K_M.gguf) are written
#   CONVERTER  llama.cpp's convert_hf_to_gguf.py (default: $CXRTRIAGE_GGUF_CONVERTER). It ships in the
#              llama-cpp-python sdist:
#                pip download --no-binary :all: --no-deps "llama-cpp-python>=0.3,<0.4" -d /tmp/llama_sdist
#                tar xzf /tmp/llama_sdist/llama_cpp_python-*.tar.gz -C /tmp/llama_sdist
#                CONVERTER=$(ls /tmp/llama_sdist/llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py)
# The converter runs with this Python (needs torch, safetensors, sentencepiece, numpy) and its own gguf-py.
# The mmproj stays f16: quantising the vision projector hurts quality for little size gain.
# Run with: GgufExplainer(OUT_DIR/model-Q4_K_M.gguf, OUT_DIR/mmproj-f16.gguf)
set -euo pipefail
HF_DIR=${1:?usage: $0 HF_DIR OUT_DIR [CONVERTER]}
OUT_DIR=${2:?usage: $0 HF_DIR OUT_DIR [CONVERTER]}
CONVERTER=${3:-${CXRTRIAGE_GGUF_CONVERTER:-}}
PYTHON=${PYTHON:-python}
if [[ -z "$CONVERTER" ]]; then
  echo "error: pass the path of convert_hf_to_gguf.py or set CXRTRIAGE_GGUF_CONVERTER" >&2
  exit 2
fi

"$PYTHON" - "$HF_DIR" "$OUT_DIR" "$CONVERTER" <<'PY'
import sys
from cxrtriage.hai_def.gguf import convert_to_gguf
model, mmproj = convert_to_gguf(sys.argv[1], sys.argv[2], converter=sys.argv[3], outtype="f16")
print(f"text model: {model}\nmmproj:     {mmproj}")
PY

# Q4_K_M through llama.cpp's quantiser in the llama-cpp-python bindings ([edge] extra); no llama-quantize binary.
if "$PYTHON" -c "import llama_cpp" >/dev/null 2>&1; then
  "$PYTHON" - "$OUT_DIR" <<'PY'
import sys
from pathlib import Path
from cxrtriage.hai_def.gguf import quantize_gguf
out = Path(sys.argv[1])
print(f"quantised:  {quantize_gguf(out / 'model-f16.gguf', out / 'model-Q4_K_M.gguf', 'Q4_K_M')}")
PY
else
  echo "llama-cpp-python ([edge] extra) not installed: keeping f16 only; install it, then run"
  echo "  python -c \"from cxrtriage.hai_def.gguf import quantize_gguf; quantize_gguf('$OUT_DIR/model-f16.gguf', '$OUT_DIR/model-Q4_K_M.gguf')\""
fi
