"""Tiny random-weight stand-ins with the same layout on disk as the real HAI-DEF checkpoints.

The real weights are gated and large, and tests/docs must run offline in seconds: a 2-layer SiglipModel saved with
``save_pretrained`` loads through ``AutoModel`` / ``AutoProcessor`` exactly like google/medsiglip-448, so every code
path except the numbers is exercised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# A few hundred words of synthetic radiology text, enough for a ~300-piece sentencepiece vocabulary.
_CORPUS = """
chest x-ray with an urgent finding such as pneumothorax, consolidation, effusion, edema
normal chest x-ray. no acute cardiopulmonary abnormality. lungs are clear. heart size is normal.
large right pneumothorax with mediastinal shift. tension pneumothorax. urgent.
left lower lobe consolidation consistent with pneumonia. air bronchograms are present.
moderate bilateral pleural effusions with compressive atelectasis.
pulmonary edema with cephalization of vessels and kerley b lines. cardiomegaly.
frontal chest radiograph of a child. no focal consolidation. no pleural effusion.
portable ap view. endotracheal tube tip above the carina. nasogastric tube in the stomach.
the costophrenic angles are sharp. the diaphragm is normal. no free air under the diaphragm.
patchy opacity in the right upper lobe may represent infection. follow up recommended.
small apical pneumothorax on the left. chest tube in place. subcutaneous emphysema.
interstitial markings are increased. mass in the left hilum. nodule in the right lung.
stable appearance compared with the prior study. no change. improved aeration.
lateral view shows a posterior effusion. blunting of the costophrenic angle.
widened mediastinum. aortic knob is calcified. degenerative changes of the spine.
fracture of the left sixth rib. no pneumothorax. soft tissues are unremarkable.
bilateral perihilar infiltrates. viral pneumonia. bacterial pneumonia with lobar consolidation.
the trachea is midline. the cardiomediastinal silhouette is within normal limits.
"""


def _train_tokenizer_model(work: Path, vocab_size: int = 300) -> Path:
    """A sentencepiece unigram model trained on the corpus above; byte_fallback so any text tokenises."""
    import sentencepiece as spm

    text = work / "corpus.txt"
    lines = [ln.strip() for ln in _CORPUS.strip().splitlines() if ln.strip()]
    text.write_text("\n".join(lines * 3) + "\n", encoding="utf-8")
    prefix = work / "spiece"
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def build_tiny_siglip(out_dir: Path, seed: int = 0, image_size: int = 32) -> Path:
    """Build, save and return a tiny SigLIP (model + SiglipProcessor) directory; seconds, no network."""
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipProcessor, SiglipTokenizer
    from transformers.models.siglip import SiglipImageProcessorPil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        spm_path = _train_tokenizer_model(Path(tmp))
        tokenizer = SiglipTokenizer(vocab_file=str(spm_path), model_max_length=64)
        vocab = len(tokenizer)
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = SiglipConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "image_size": image_size,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_channels": 3,
        },
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    model.config._name_or_path = "tiny-siglip"
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
