#!/usr/bin/env bash
# download_datasets.sh: where to get the chest X-ray datasets cxrtriage uses, under which terms,
# and the folder layout the project expects.
#
# This script never downloads anything unless you ask for it explicitly with
# `--download NAME`, and only for the datasets whose owners offer an open download
# (kermany, iu_reports). NIH ChestX-ray14, MIMIC-CXR-JPG and CheXpert are manual-only: the
# script prints the steps and commands for you to run yourself.
#
# Nothing obtained here may be committed to this repository or redistributed: every dataset
# has its own terms of use (see TERMS.md).
#
# Exit codes: 0 ok, 1 a download or extraction failed, 2 usage error (including asking
# to download a manual-only dataset).

set -euo pipefail

PROG="$(basename "$0")"
DATA_DIR="${CXRTRIAGE_DATA_DIR:-../shared/data}"
ALL_DATASETS="nih kermany iu_reports mimic chexpert"

# Open downloads (checked against several independent public projects that use them).
KERMANY_PAGE="https://data.mendeley.com/datasets/rscbjbr9sj/2"
KERMANY_ZIP_URL="https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
# SHA-256 of ChestXRay2017.zip as reported by another public project; we only warn on mismatch.
KERMANY_ZIP_SHA256_REPORTED="13efc055629733dbab07877f8b3c9f81097840dbcdaa326a8542322c2281ce36"
IU_REPORTS_URL="https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz"

usage() {
    cat <<EOF
Usage: $PROG [--data-dir DIR] [--list | --info [NAME] | --check | --download NAME]

Prints where to obtain each chest X-ray dataset, its terms of use and the folder layout
cxrtriage expects under the data directory. Downloads nothing unless --download is given.

Options:
  --data-dir DIR   data directory (default: \$CXRTRIAGE_DATA_DIR, else ../shared/data;
                   currently: $DATA_DIR)
  --list           list the dataset names
  --info [NAME]    source, terms and expected layout of NAME, or of every dataset
                   (this is also what runs when no option is given)
  --check          report which expected folders/files exist under the data directory,
                   with counts; missing ones are reported, not an error (exit 0)
  --download NAME  download and lay out an openly downloadable dataset:
                     kermany     Mendeley Data zip (CC BY 4.0), ~1.2 GB
                     iu_reports  NLM Open-i report XML (CC BY-NC-ND 4.0), small
                   nih, mimic and chexpert are manual-only (exit 2 with instructions)
  -h, --help       this help

Datasets: $ALL_DATASETS

Exit codes: 0 ok, 1 a download/extraction failed, 2 usage error.
EOF
}

die_usage() {
    echo "$PROG: $1" >&2
    echo "Run '$PROG --help' for usage." >&2
    exit 2
}

hr() { printf '%s\n' "------------------------------------------------------------------------"; }

info_nih() {
    hr
    cat <<EOF
NIH ChestX-ray14 (NIH Clinical Center)                      [manual download]
  Where:   https://nihcc.app.box.com/v/ChestXray-NIHCC  (images_001..012.tar.gz,
           Data_Entry_2017_v2020.csv, BBox_List_2017.csv, README_CHESTXRAY.pdf)
           Google expert labels (Majkowska et al., Radiology 2020):
           https://docs.cloud.google.com/healthcare-api/docs/resources/public-datasets/nih-chest#additional_labels
  Terms:   NIH Clinical Center: no restriction on use; acknowledge the NIH Clinical
           Center and cite Wang et al., CVPR 2017 (see CITATION.md). Labels were
           text-mined from reports and are noisy.
  Why manual: the official distribution is a Box folder of large archives that must be
           downloaded through the Box web page.
  Layout expected under \$DATA_DIR:
    nih/images/*.png        frontal radiographs (PA/AP), 8-bit grey PNG (the shared copy
                            is downsampled to 512x512)
    nih/labels.csv          columns: file,image_index,patient_id,follow_up,age,sex,view,
                            folder_label,nih_labels,google2019,urgency,width,height,sha256
                            (file relative to nih/, nih_labels '|'-separated,
                             urgency in {urgent, non_urgent})
    nih/boxes.csv           columns: file,image_index,finding,x,y,w,h
                            (boxes in the pixel space of the PNG in nih/images)
  Split by patient_id: several images belong to the same patient.
EOF
}

info_kermany() {
    hr
    cat <<EOF
Kermany et al. pediatric chest X-rays (Guangzhou Women and Children's Medical Center)
                                                            [--download kermany]
  Where:   $KERMANY_PAGE
           (ChestXRay2017.zip, Mendeley Data V2, doi:10.17632/rscbjbr9sj.2; a later
            V3 exists, doi:10.17632/rscbjbr9sj.3)
  Terms:   CC BY 4.0: attribution required. Cite Kermany et al., Cell 2018 and the
           Mendeley dataset (see CITATION.md). Children aged 1-5, AP views.
  Layout expected under \$DATA_DIR:
    kermany/images/NORMAL/*.jpeg
    kermany/images/PNEUMONIA/*.jpeg
    kermany/labels.csv      columns: file,label,subtype,patient_key,urgency,sha256
                            (label NORMAL|PNEUMONIA, subtype bacteria|virus|'',
                             PNEUMONIA = urgent, NORMAL = non_urgent)
  '--download kermany' puts the official train split in kermany/ and the official test
  split in kermany_test/ (same layout), at the original resolution.
EOF
}

info_iu_reports() {
    hr
    cat <<EOF
Indiana University chest X-ray reports (NLM Open-i)        [--download iu_reports]
  Where:   https://openi.nlm.nih.gov/  ($IU_REPORTS_URL, report XML only; no images needed)
  Terms:   CC BY-NC-ND 4.0: non-commercial, no derivatives, attribution.
           Cite Demner-Fushman et al., JAMIA 2016. cxrtriage only reads these reports at
           run time (e.g. to test prior-report handling); it ships nothing derived from
           their text.
  Layout expected under \$DATA_DIR:
    iu_reports/iu_reports.csv   columns: uid,images,n_images,mesh_major,mesh_auto,
                                comparison,indication,findings,impression
                                (de-identification placeholders appear as XXXX)
EOF
}

info_mimic() {
    hr
    cat <<EOF
MIMIC-CXR-JPG 2.1.0 (PhysioNet)                             [manual download]
  Where:   https://physionet.org/content/mimic-cxr-jpg/2.1.0/
  Terms:   PhysioNet credentialed access: you need a credentialed PhysioNet account, the
           required human-subjects training, and to sign the data use agreement for this
           project. Licence: PhysioNet Credentialed Health Data License 1.5.0. Do not
           redistribute the data or anything that would let others access it, and do not
           send it to online services/APIs. Cite Johnson et al. (see CITATION.md).
  Why manual: access requires your own PhysioNet credentials. Run this yourself
           (it asks for your PhysioNet password):
    wget -r -N -c -np --user YOUR_PHYSIONET_USER --ask-password https://physionet.org/files/mimic-cxr-jpg/2.1.0/
           The whole dataset is several hundred GB. To start with the label tables only:
    for f in mimic-cxr-2.0.0-metadata.csv.gz mimic-cxr-2.0.0-chexpert.csv.gz mimic-cxr-2.0.0-split.csv.gz; do
      wget -N -c --user YOUR_PHYSIONET_USER --ask-password "https://physionet.org/files/mimic-cxr-jpg/2.1.0/\$f"
    done
  Then build a labelled, patient-disjoint subset (paths only, no image copies):
    python prototype/data_scripts/prepare_mimic_subset.py \\
        --mimic-root /path/to/physionet.org/files/mimic-cxr-jpg/2.1.0 \\
        --out "\$DATA_DIR/mimic" --n 2000
  Layout expected under \$DATA_DIR (written by prepare_mimic_subset.py):
    mimic/labels.csv        same columns as nih/labels.csv (+ study_id, split,
                            chexpert_positive, chexpert_uncertain, urgency_reason);
                            'file' is relative to the MIMIC-CXR-JPG root recorded in
                            mimic/README.md (or to mimic/ with --copy-images)
    mimic/README.md         provenance and the urgency rule used
  Keep mimic/ outside any git repository: the subset is MIMIC data.
EOF
}

info_chexpert() {
    hr
    cat <<EOF
CheXpert (Stanford ML Group / Stanford AIMI)               [manual download]
  Where:   https://stanfordmlgroup.github.io/competitions/chexpert/
  Terms:   "Stanford University School of Medicine CheXpert Dataset
           Research Use Agreement": registration required, research use only,
           no redistribution. Cite Irvin et al., AAAI 2019.
  Why manual: the download link is issued after you register and accept the agreement.
  Layout: cxrtriage does not read CheXpert by default. Keep the archive as distributed,
           e.g. \$DATA_DIR/chexpert/CheXpert-v1.0/{train.csv,valid.csv,train/,valid/}.
           Its labels use the same CheXpert labeler conventions as MIMIC-CXR-JPG
           (1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned), so the same
           urgency rule as prepare_mimic_subset.py applies.
EOF
}

info_dicom() {
    hr
    cat <<EOF
DICOM test files (optional)
  Layout:  dicom/*.dcm      a few real chest radiograph DICOMs used by tests/examples.
           Public samples: the NEMA CR-MONO1-10-chest.dcm sample and DICOMs from the
           SIIM-ACR pneumothorax challenge. cxrtriage never logs patient identifiers
           from DICOM headers.
EOF
}

info_one() {
    case "$1" in
        nih) info_nih ;;
        kermany) info_kermany ;;
        iu_reports) info_iu_reports ;;
        mimic) info_mimic ;;
        chexpert) info_chexpert ;;
        dicom) info_dicom ;;
        *) die_usage "unknown dataset '$1' (choose from: $ALL_DATASETS)" ;;
    esac
}

info_all() {
    echo "cxrtriage datasets (data directory: $DATA_DIR)"
    echo "Nothing is downloaded by this command. Terms of use: see TERMS.md."
    for d in $ALL_DATASETS dicom; do info_one "$d"; done
    hr
}

# ---------------------------------------------------------------- --check
count_files() {  # count_files DIR PATTERN
    if [ -d "$1" ]; then
        find "$1" -maxdepth 1 -type f -name "$2" | wc -l | tr -d ' '
    else
        echo 0
    fi
}

count_rows() {  # data rows of a CSV (lines minus header); handles quoted newlines via python3 if present
    local f="$1"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$f" <<'PY'
import csv, sys
csv.field_size_limit(1 << 30)
with open(sys.argv[1], newline="", encoding="utf-8", errors="replace") as fh:
    print(max(sum(1 for _ in csv.reader(fh)) - 1, 0))
PY
    else
        echo $(( $(wc -l < "$f") - 1 ))
    fi
}

MISSING=0
OPTIONAL_MISSING=0
OPTIONAL=0  # set to 1 while checking optional datasets
note_missing() {
    if [ "$OPTIONAL" -eq 1 ]; then
        printf '  [missing] %-34s (optional)\n' "$1"
        OPTIONAL_MISSING=$((OPTIONAL_MISSING + 1))
    else
        printf '  [missing] %s\n' "$1"
        MISSING=$((MISSING + 1))
    fi
}

check_dir() {  # check_dir LABEL DIR PATTERN
    if [ -d "$2" ]; then
        printf '  [ok]      %-34s %s files\n' "$1" "$(count_files "$2" "$3")"
    else
        note_missing "$1"
    fi
}

check_csv() {  # check_csv LABEL FILE
    if [ -f "$2" ]; then
        printf '  [ok]      %-34s %s rows\n' "$1" "$(count_rows "$2")"
    else
        note_missing "$1"
    fi
}

do_check() {
    echo "Checking data directory: $DATA_DIR"
    if [ ! -d "$DATA_DIR" ]; then
        echo "  [missing] the data directory itself does not exist."
        echo "  Set CXRTRIAGE_DATA_DIR or pass --data-dir; run '$PROG --info' for sources."
        return 0
    fi
    echo "nih (NIH ChestX-ray14):"
    check_dir "nih/images/*.png" "$DATA_DIR/nih/images" "*.png"
    check_csv "nih/labels.csv" "$DATA_DIR/nih/labels.csv"
    check_csv "nih/boxes.csv" "$DATA_DIR/nih/boxes.csv"
    echo "kermany (pediatric, CC BY 4.0):"
    check_dir "kermany/images/NORMAL/*.jpeg" "$DATA_DIR/kermany/images/NORMAL" "*.jpeg"
    check_dir "kermany/images/PNEUMONIA/*.jpeg" "$DATA_DIR/kermany/images/PNEUMONIA" "*.jpeg"
    check_csv "kermany/labels.csv" "$DATA_DIR/kermany/labels.csv"
    echo "iu_reports (Open-i reports, CC BY-NC-ND 4.0):"
    check_csv "iu_reports/iu_reports.csv" "$DATA_DIR/iu_reports/iu_reports.csv"
    OPTIONAL=1
    echo "dicom (optional test files):"
    check_dir "dicom/*.dcm" "$DATA_DIR/dicom" "*.dcm"
    echo "mimic (optional, credentialed; from prepare_mimic_subset.py):"
    check_csv "mimic/labels.csv" "$DATA_DIR/mimic/labels.csv"
    echo "chexpert (optional, manual):"
    if [ -d "$DATA_DIR/chexpert" ]; then
        printf '  [ok]      %-34s present\n' "chexpert/"
    else
        note_missing "chexpert/"
    fi
    echo "Missing: $MISSING required item(s), $OPTIONAL_MISSING optional item(s)."
    if [ $((MISSING + OPTIONAL_MISSING)) -gt 0 ]; then
        echo "Run '$PROG --info NAME' for how to obtain them."
    fi
    return 0
}

# ---------------------------------------------------------------- --download
fetch() {  # fetch URL OUTFILE
    local url="$1" out="$2"
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -C - -o "$out" "$url"
    elif command -v wget >/dev/null 2>&1; then
        wget -c -O "$out" "$url"
    else
        echo "$PROG: neither curl nor wget is installed." >&2
        return 1
    fi
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

need_python() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo "$PROG: python3 is required to lay out the downloaded files." >&2
        exit 1
    fi
}

download_kermany() {
    need_python
    local raw="$DATA_DIR/kermany_raw"
    local zip="$raw/ChestXRay2017.zip"
    mkdir -p "$raw"
    echo "Downloading the Kermany et al. chest X-ray archive (CC BY 4.0) to $zip"
    echo "Source: $KERMANY_PAGE"
    if [ -s "$zip" ] && python3 -m zipfile -t "$zip" >/dev/null 2>&1; then
        echo "Reusing the complete archive already at $zip"
    elif ! fetch "$KERMANY_ZIP_URL" "$zip"; then
        echo "$PROG: download failed. Mendeley Data sometimes refuses scripted downloads:" >&2
        echo "  open $KERMANY_PAGE in a browser, download ChestXRay2017.zip to $zip," >&2
        echo "  and run '$PROG --download kermany' again (an existing zip is reused)." >&2
        exit 1
    fi
    local sum
    sum="$(sha256_of "$zip")"
    echo "sha256 $sum"
    if [ "$sum" != "$KERMANY_ZIP_SHA256_REPORTED" ]; then
        echo "warning: sha256 differs from the value reported by another project" \
             "($KERMANY_ZIP_SHA256_REPORTED); check the file if extraction fails." >&2
    fi
    echo "Extracting and writing kermany/ (train split) and kermany_test/ (test split)"
    python3 - "$zip" "$DATA_DIR" <<'PY' || exit 1
import csv, hashlib, re, shutil, sys, zipfile
from pathlib import Path

zip_path, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
targets = {"train": data_dir / "kermany", "test": data_dir / "kermany_test"}
rows = {"train": [], "test": []}

def patient_key(name: str, label: str) -> str:
    # PNEUMONIA files are person<N>_<bacteria|virus>_<k>.jpeg -> p<N>.
    # NORMAL files (IM-xxxx-xxxx.jpeg, NORMAL2-IM-xxxx-xxxx.jpeg) carry no reliable patient
    # id, so they are grouped conservatively by file-name prefix.
    m = re.match(r"person(\d+)_", name)
    if m:
        return "p" + m.group(1)
    m = re.match(r"(.*?)-\d+-\d+\.jpe?g$", name, re.IGNORECASE)
    return m.group(1) if m else label

with zipfile.ZipFile(zip_path) as zf:
    for info in zf.infolist():
        parts = Path(info.filename).parts
        if info.is_dir() or "__MACOSX" in parts or len(parts) < 3:
            continue
        split, label, name = parts[-3].lower(), parts[-2].upper(), parts[-1]
        if split not in targets or label not in ("NORMAL", "PNEUMONIA"):
            continue
        if not name.lower().endswith((".jpeg", ".jpg")) or name.startswith("."):
            continue
        rel = Path("images") / label / name
        dest = targets[split] / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with zf.open(info) as src, open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        low = name.lower()
        subtype = "bacteria" if "bacteria" in low else "virus" if "virus" in low else ""
        rows[split].append({
            "file": rel.as_posix(), "label": label,
            "subtype": subtype if label == "PNEUMONIA" else "",
            "patient_key": patient_key(name, label),
            "urgency": "urgent" if label == "PNEUMONIA" else "non_urgent",
            "sha256": digest.hexdigest(),
        })

fields = ["file", "label", "subtype", "patient_key", "urgency", "sha256"]
for split, target in targets.items():
    if not rows[split]:
        continue
    with open(target / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(sorted(rows[split], key=lambda r: r["file"]))
    print(f"{target}: {len(rows[split])} images")
if not any(rows.values()):
    sys.exit("no chest_xray/{train,test}/{NORMAL,PNEUMONIA} images found in the archive")
PY
    echo "Done. The zip is kept in $raw (delete it to save space)."
}

download_iu_reports() {
    need_python
    local raw="$DATA_DIR/iu_reports/raw"
    local tgz="$raw/NLMCXR_reports.tgz"
    mkdir -p "$raw"
    echo "Downloading Open-i Indiana University report XML (CC BY-NC-ND 4.0) to $tgz"
    if [ -s "$tgz" ] && tar -tzf "$tgz" >/dev/null 2>&1; then
        echo "Reusing the complete archive already at $tgz"
    elif ! fetch "$IU_REPORTS_URL" "$tgz"; then
        echo "$PROG: download failed; see https://openi.nlm.nih.gov/faq for the collection." >&2
        exit 1
    fi
    echo "sha256 $(sha256_of "$tgz")"
    tar -xzf "$tgz" -C "$raw" || { echo "$PROG: could not extract $tgz" >&2; exit 1; }
    python3 - "$raw" "$DATA_DIR/iu_reports/iu_reports.csv" <<'PY' || exit 1
import csv, re, sys
import xml.etree.ElementTree as ET
from pathlib import Path

raw, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for xml_path in raw.rglob("*.xml"):
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError:
        continue
    uid_el = root.find(".//uId")
    uid = uid_el.get("id") if uid_el is not None and uid_el.get("id") else "CXR" + xml_path.stem
    def section(label):
        el = root.find(f".//AbstractText[@Label='{label}']")
        return " ".join((el.text or "").split()) if el is not None else ""
    images = [p.get("id", "") for p in root.findall(".//parentImage") if p.get("id")]
    rows.append({
        "uid": uid,
        "images": "|".join(images),
        "n_images": len(images),
        "mesh_major": "|".join((m.text or "").strip() for m in root.findall(".//MeSH/major") if m.text),
        "mesh_auto": "|".join((m.text or "").strip() for m in root.findall(".//MeSH/automatic") if m.text),
        "comparison": section("COMPARISON"),
        "indication": section("INDICATION"),
        "findings": section("FINDINGS"),
        "impression": section("IMPRESSION"),
    })
if not rows:
    sys.exit("no report XML found after extraction")
key = lambda r: int(re.sub(r"\D", "", r["uid"]) or 0)
with open(out, "w", newline="", encoding="utf-8") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(sorted(rows, key=key))
print(f"{out}: {len(rows)} reports")
PY
}

do_download() {
    case "$1" in
        kermany) download_kermany ;;
        iu_reports) download_iu_reports ;;
        nih|mimic|chexpert)
            info_one "$1"
            echo "$PROG: '$1' is manual-only; follow the steps above." >&2
            exit 2 ;;
        *) die_usage "unknown dataset '$1' (choose from: $ALL_DATASETS)" ;;
    esac
}

# ---------------------------------------------------------------- argument parsing
ACTION="info"
TARGET=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --data-dir)
            [ $# -ge 2 ] && [ -n "$2" ] || die_usage "--data-dir needs a directory"
            DATA_DIR="$2"; shift 2 ;;
        --data-dir=*) DATA_DIR="${1#*=}"; [ -n "$DATA_DIR" ] || die_usage "--data-dir needs a directory"; shift ;;
        --list) ACTION="list"; shift ;;
        --check) ACTION="check"; shift ;;
        --info)
            ACTION="info"
            if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then TARGET="$2"; shift; fi
            shift ;;
        --download)
            [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#-}" = "$2" ] || die_usage "--download needs a dataset name"
            ACTION="download"; TARGET="$2"; shift 2 ;;
        --download=*) ACTION="download"; TARGET="${1#*=}"; [ -n "$TARGET" ] || die_usage "--download needs a dataset name"; shift ;;
        *) die_usage "unknown argument '$1'" ;;
    esac
done

case "$ACTION" in
    list) for d in $ALL_DATASETS; do echo "$d"; done ;;
    check) do_check ;;
    info) if [ -n "$TARGET" ]; then info_one "$TARGET"; else info_all; fi ;;
    download) do_download "$TARGET" ;;
esac
exit 0
