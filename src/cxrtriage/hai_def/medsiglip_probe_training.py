"""The MedSigLIP linear probe trained on the committed split (train / val): embeddings, probe, similar-case index."""

from __future__ import annotations

from pathlib import Path

from cxrtriage.hai_def.finetune_config import PROGRESS_EVERY_S
from cxrtriage.hai_def.finetune_data import balanced_records


def train_medsiglip_probe(
    model_dir: str | Path,
    data_dir: str | Path,
    out_path: str | Path,
    limit: int | None = None,
    *,
    device: str | None = None,
    n_boot: int = 1000,
    datasets: tuple[str, ...] = ("nih", "kermany"),
    progress: bool = False,
) -> dict:
    """Embed the split's train/val records with MedSigLIP, train the linear probe, save ``probe.json`` and, beside
    it, ``index.npz`` (training IDs, labels and embeddings for similar cases; its OOD gate is in the probe's meta).

    ``limit`` caps records per dataset and split (balanced by label) for quick runs. Images are decoded one batch
    at a time (a whole split's decoded pixels would take GBs of memory); ``progress`` shows a bar per split.
    Returns the validation metrics (AUC of the calibrated score, threshold, review band, sizes) plus ``probe_path``.
    """
    import numpy as np
    from tqdm import tqdm

    from cxrtriage.backends.embedding_index import build_index_and_ood
    from cxrtriage.backends.medsiglip import INDEX_FILE, PROBE_FILE, MedSigLIPBackend
    from cxrtriage.data import load_split_records
    from cxrtriage.evaluation import metrics
    from cxrtriage.hai_def.probe import train_linear_probe
    from cxrtriage.imaging.load import load_image

    parts = load_split_records(Path(data_dir), datasets)
    train, val = balanced_records(parts["train"], limit), balanced_records(parts["val"], limit)
    backend = MedSigLIPBackend(str(model_dir), device=device)

    def embed(recs, desc: str):
        step = max(1, int(getattr(backend, "batch_size", 16)))
        chunks = []
        with tqdm(
            total=len(recs),
            desc=f"MedSigLIP embeddings ({desc})",
            unit="img",
            disable=not progress,
            mininterval=PROGRESS_EVERY_S,
        ) as bar:
            for i in range(0, len(recs), step):
                chunks.append(backend.embed([load_image(r.path).pixels for r in recs[i : i + step]]))
                bar.update(len(recs[i : i + step]))
        return np.concatenate(chunks) if chunks else backend.embed([])

    x, xv = embed(train, "train"), embed(val, "val")
    y = np.array([r.urgent for r in train])
    yv = np.array([r.urgent for r in val])
    groups = np.array([r.patient for r in val])
    # the similar-case index: training embeddings (IDs and labels only, no images); OOD gate from validation
    centre, index_emb, ood = build_index_and_ood(x, xv, k=5)
    probe = train_linear_probe(
        x,
        y,
        xv,
        yv,
        groups,
        n_boot=n_boot,
        meta={
            "model": str(model_dir),
            "datasets": list(datasets),
            "limit": limit,
            "split": "cxrtriage/splits/split.csv",
            "ood": ood,
        },
    )
    out_path = Path(out_path)
    if out_path.is_dir() or not out_path.suffix:
        out_path.mkdir(parents=True, exist_ok=True)
        out_path = out_path / PROBE_FILE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    probe.save(out_path)
    np.savez_compressed(
        out_path.parent / INDEX_FILE,
        keys=np.array([r.key for r in train]),
        labels=y.astype(np.int8),
        embeddings=index_emb.astype(np.float16),
        centre=centre.astype(np.float32),
    )
    return {
        "val_auc": metrics.roc_auc(yv, probe.score(xv)),
        "threshold": probe.threshold,
        "review_band": list(probe.review_band),
        "n_train": int(len(y)),
        "n_val": int(len(yv)),
        "probe_path": str(out_path),
        "index_path": str(out_path.parent / INDEX_FILE),
        "min_knn_similarity": ood["min_knn_similarity"],
    }
