"""The MedGemma output parser: every way generative output goes wrong must yield a safe answer or None."""

from __future__ import annotations

import pytest

from cxrtriage.backends.medgemma.output import (
    MAX_EXPLANATION_CHARS,
    box_to_xywh,
    extract_json_object,
    normalise_urgency,
    one_line,
    parse_medgemma_output,
    strip_thinking,
    verify_quote,
)
from cxrtriage.backends.medgemma.prompt import REPAIR_PROMPT, REPORT_BEGIN, REPORT_END, build_messages

SIZE = (2000, 1000)  # (height, width)
REPORT = "PA chest.\nThere is a  large RIGHT pleural effusion.\nHeart size is normal."
GOOD = (
    '{"urgency": "Urgent", "explanation": "Large right pleural effusion.", '
    '"box": [100, 500, 600, 900], "supporting_quote": "there is a large right pleural effusion"}'
)


def test_plain_json_full_answer() -> None:
    ans = parse_medgemma_output(GOOD, SIZE, REPORT)
    assert ans is not None
    assert ans.urgency == "Urgent"
    assert ans.explanation == "Large right pleural effusion."
    # y0=100 -> 200 px, x0=500 -> 500 px, y1=600 -> 1200 px, x1=900 -> 900 px
    assert ans.box_xywh == (500, 200, 400, 1000)
    assert ans.supporting_quote == "There is a  large RIGHT pleural effusion"  # exact report substring
    assert ans.raw == GOOD


def test_box_conversion_exact_numbers() -> None:
    assert box_to_xywh([0, 0, 500, 250], (1024, 2048)) == (0, 0, 512, 512)
    assert box_to_xywh([250, 100, 750, 900], (400, 300)) == (30, 100, 240, 200)
    assert box_to_xywh(["100", "200", "300", "400.0"], (1000, 1000)) == (200, 100, 200, 200)
    assert box_to_xywh([[0, 0, 500, 500]], (10, 10)) == (0, 0, 5, 5)  # nested list


def test_box_swapped_and_clamped() -> None:
    assert box_to_xywh([600, 900, 100, 500], SIZE) == (500, 200, 400, 1000)  # corners swapped
    assert box_to_xywh([-50, 800, 400, 1200], (1000, 1000)) == (800, 0, 200, 400)  # clamped to the image


@pytest.mark.parametrize(
    "box",
    [
        None,
        [],
        [1, 2, 3],
        [1, 2, 3, 4, 5],
        "100,200,300,400",
        [100, 100, 100, 500],
        [0, 0, 1, 1],
        ["a", 0, 10, 10],
        [0, 0, 1000, 1000],
        [float("nan"), 0, 500, 500],
        {"x": 1},
    ],
)
def test_bad_boxes_rejected(box) -> None:
    assert box_to_xywh(box, (1000, 1000)) is None


def test_bad_box_keeps_rest_of_answer() -> None:
    text = '{"urgency": "Non-Urgent", "explanation": "Clear lungs.", "box": [5, 5, 5, 5], "supporting_quote": null}'
    ans = parse_medgemma_output(text, SIZE, REPORT)
    assert ans is not None and ans.box_xywh is None and ans.urgency == "Non-Urgent"


def test_code_fence() -> None:
    ans = parse_medgemma_output("```json\n" + GOOD + "\n```", SIZE, REPORT)
    assert ans is not None and ans.urgency == "Urgent"


def test_thinking_trace_stripped() -> None:
    text = '<unused94>thought\nMaybe {"urgency": "Non-Urgent", "explanation": "decoy"} hmm<unused95>' + GOOD
    ans = parse_medgemma_output(text, SIZE, REPORT)
    assert ans is not None and ans.explanation == "Large right pleural effusion."


def test_unterminated_thinking_trace() -> None:
    assert strip_thinking("answer <unused94>thinking forever {") == "answer "
    assert parse_medgemma_output('<unused94>thought {"urgency": "Urgent", "explanation": "x"}', SIZE, None) is None


def test_closer_without_opener() -> None:
    assert strip_thinking("thinking...<unused95>" + GOOD) == GOOD


def test_trailing_text_and_leading_prose() -> None:
    text = "Here is my answer:\n" + GOOD + "\nI hope this helps! {not json}"
    ans = parse_medgemma_output(text, SIZE, REPORT)
    assert ans is not None and ans.box_xywh == (500, 200, 400, 1000)


def test_first_parseable_object_wins() -> None:
    text = "{broken {" + GOOD
    ans = parse_medgemma_output(text, SIZE, REPORT)
    assert ans is not None and ans.urgency == "Urgent"


def test_single_quotes_trailing_commas_python_literals() -> None:
    text = (
        "{'urgency': 'urgent', 'explanation': 'The patient's effusion is large', 'box': None, "
        "'supporting_quote': None,}"
    )
    ans = parse_medgemma_output(text, SIZE, REPORT)
    assert ans is not None
    assert ans.urgency == "Urgent"
    assert ans.explanation == "The patient's effusion is large"
    assert ans.box_xywh is None and ans.supporting_quote is None


def test_braces_inside_strings() -> None:
    obj = extract_json_object('{"explanation": "a } brace { inside", "urgency": "URGENT"} trailing')
    assert obj == {"explanation": "a } brace { inside", "urgency": "URGENT"}


def test_end_of_turn_tokens_ignored() -> None:
    ans = parse_medgemma_output(GOOD + "<end_of_turn>\n<eos>", SIZE, REPORT)
    assert ans is not None


@pytest.mark.parametrize(
    "value,expected",
    [
        ("Urgent", "Urgent"),
        ("urgent", "Urgent"),
        ("URGENT", "Urgent"),
        (" Urgent. ", "Urgent"),
        ("Non-Urgent", "Non-Urgent"),
        ("non urgent", "Non-Urgent"),
        ("Non-urgent", "Non-Urgent"),
        ("NON_URGENT", "Non-Urgent"),
        ("nonurgent", "Non-Urgent"),
        ("not urgent", "Non-Urgent"),
        ("maybe", None),
        ("", None),
        (None, None),
        (1, None),
        ("semi-urgent", None),
    ],
)
def test_urgency_spellings(value, expected) -> None:
    assert normalise_urgency(value) == expected


def test_unknown_urgency_keeps_explanation() -> None:
    ans = parse_medgemma_output('{"urgency": "possibly", "explanation": "Small opacity."}', SIZE, None)
    assert ans is not None and ans.urgency is None and ans.explanation == "Small opacity."


def test_key_aliases() -> None:
    ans = parse_medgemma_output('{"label": "urgent", "reason": "Pneumothorax.", "bbox": [0, 0, 500, 500]}', SIZE, None)
    assert ans is not None and ans.urgency == "Urgent" and ans.box_xywh == (0, 0, 500, 1000)


def test_quote_not_in_report_dropped() -> None:
    text = GOOD.replace("there is a large right pleural effusion", "there is a left pneumothorax")
    ans = parse_medgemma_output(text, SIZE, REPORT)
    assert ans is not None and ans.supporting_quote is None


def test_quote_without_report_dropped() -> None:
    ans = parse_medgemma_output(GOOD, SIZE, None)
    assert ans is not None and ans.supporting_quote is None


def test_verify_quote_variants() -> None:
    assert verify_quote('"Heart size is normal."', REPORT) == "Heart size is normal."
    assert verify_quote("heart   size\nis NORMAL", REPORT) == "Heart size is normal"
    assert verify_quote("normal", REPORT) is None  # too short to prove anything
    assert verify_quote(42, REPORT) is None
    assert verify_quote("Heart size is normal.", "") is None


def test_explanation_one_line_capped() -> None:
    long = "word " * 200
    ans = parse_medgemma_output(f'{{"urgency": "Urgent", "explanation": "{long}"}}', SIZE, None)
    assert ans is not None and len(ans.explanation) <= MAX_EXPLANATION_CHARS and ans.explanation.endswith("…")
    assert one_line("line one\n\n  line two\t") == "line one line two"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage garbage",
        "CCCCCCCCCCCC",
        "{",
        "{}",
        '{"urgency": "Urgent"}',
        '{"urgency": "Urgent", "explanation": "   "}',
        "[1, 2, 3]",
        '{"explanation": 5}',
        None,
    ],
)
def test_garbage_returns_none(text) -> None:
    assert parse_medgemma_output(text, SIZE, REPORT) is None


def test_messages_shape_and_report_block() -> None:
    msgs = build_messages("No acute findings.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"][0] == {"type": "image"}
    text = msgs[1]["content"][1]["text"]
    assert f"{REPORT_BEGIN}\nNo acute findings.\n{REPORT_END}" in text
    assert '"urgency"' in text and "0-1000" in text and "[y0, x0, y1, x1]" in text
    no_report = build_messages(None)[1]["content"][1]["text"]
    assert REPORT_BEGIN not in no_report and "null" in no_report
    assert REPAIR_PROMPT.startswith("Your previous answer was not valid JSON")
