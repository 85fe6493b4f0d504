import pytest

from i2v.errors import InvalidOptionError
from i2v.options import (
    DEFAULT_PROMPT,
    MAX_PROMPT_CHARS,
    NANOBANANA_DURATIONS,
    resolve_options,
    resolve_options_with_warnings,
    validate_options,
)


def nb(**metadata):
    return resolve_options("nanobanana", {}, metadata)


def nh(**metadata):
    return resolve_options("nohuman", {}, metadata)


def test_nanobanana_provider_defaults_are_filled_in():
    assert nb() == {
        "prompt": DEFAULT_PROMPT,
        "video_model": "seedance2",
        "resolution": "480p",
        "duration": 5,
        "aspect_ratio": "16:9",
        "motion_intensity": "medium",
    }


def test_nohuman_provider_defaults_are_filled_in_with_a_prompt():
    assert nh() == {
        "prompt": DEFAULT_PROMPT,
        "mode": "fast",
        "aspect_ratio": "16:9",
        "duration": 5,
        "cfg_scale": 0.5,
        "sound": True,
    }


def test_metadata_overrides_stack_defaults_option_by_option():
    options = resolve_options(
        "nohuman",
        {"prompt": "stack prompt", "mode": "hq", "duration": "10"},
        {"duration": "5"},
    )
    assert options["prompt"] == "stack prompt"
    assert options["mode"] == "hq"
    assert options["duration"] == 5


def test_metadata_keys_are_case_insensitive_and_accept_dashes():
    options = resolve_options("nanobanana", {}, {"Video-Model": "veo3", "MOTION_INTENSITY": "High"})
    assert options["video_model"] == "veo3"
    assert options["motion_intensity"] == "high"
    assert options["duration"] == 8  # veo3's fixed duration is the default for it


def test_stack_defaults_of_the_other_provider_are_ignored():
    # The template carries defaults for both providers; only the chosen one's apply.
    options = resolve_options("nohuman", {"video_model": "veo3", "resolution": "1080p"}, {})
    assert "video_model" not in options and "resolution" not in options


def test_unknown_metadata_key_names_the_key_and_the_allowed_options():
    with pytest.raises(InvalidOptionError) as caught:
        nh(colour="red")
    message = caught.value.message
    assert "'colour'" in message
    assert "allowed: prompt, mode, negative_prompt, aspect_ratio, duration, cfg_scale, sound" in message


def test_option_of_the_other_provider_is_refused():
    with pytest.raises(InvalidOptionError) as caught:
        nh(video_model="veo3")
    assert "not an option of nohuman" in caught.value.message
    assert "allowed:" in caught.value.message
    with pytest.raises(InvalidOptionError, match="not an option of nanobanana"):
        nb(mode="hq")


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"video_model": "gen3"}, "video_model must be one of seedance2, veo3, sora2"),
        ({"resolution": "4k"}, "resolution must be one of 480p, 720p, 1080p"),
        ({"duration": "2"}, "duration must be 3 to 12"),
        ({"duration": "13"}, "duration must be 3 to 12"),
        ({"duration": "five"}, "duration must be 3 to 12"),
        ({"duration": "6.5"}, "duration must be 3 to 12"),
        ({"video_model": "veo3", "duration": "10"}, "duration must be 8 seconds for nanobanana veo3 (got '10')"),
        ({"video_model": "sora2", "duration": "12"}, "duration must be 10, 15 seconds for nanobanana sora2"),
        ({"video_model": "veo3", "aspect_ratio": "9:16"}, "aspect_ratio must be one of 16:9 for nanobanana veo3"),
        ({"video_model": "sora2", "aspect_ratio": "1:1"}, "aspect_ratio must be one of 16:9 for nanobanana sora2"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio must be one of 16:9, 9:16, 1:1, 4:3, 3:4, 21:9"),
        ({"motion_intensity": "extreme"}, "motion_intensity must be one of low, medium, high"),
    ],
)
def test_nanobanana_rules(metadata, fragment):
    with pytest.raises(InvalidOptionError) as caught:
        nb(**metadata)
    assert fragment in caught.value.message
    assert "(got " in caught.value.message


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"duration": "3"}, {"duration": 3}),
        ({"duration": "12"}, {"duration": 12}),
        ({"video_model": "veo3", "duration": "8"}, {"duration": 8}),
        ({"video_model": "sora2", "duration": "15"}, {"duration": 15}),
        ({"video_model": "sora2"}, {"duration": 10}),
        ({"aspect_ratio": "21:9"}, {"aspect_ratio": "21:9"}),
        ({"resolution": "1080P"}, {"resolution": "1080p"}),
    ],
)
def test_nanobanana_accepted_values(metadata, expected):
    options = nb(**metadata)
    assert {key: options[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"mode": "turbo"}, "mode must be one of fast, hq for nohuman (got 'turbo')"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio must be one of 16:9, 9:16, 1:1 for nohuman (got '4:3')"),
        ({"duration": "7"}, "duration must be 5, 10 seconds for nohuman (got '7')"),
        ({"cfg_scale": "1.5"}, "cfg_scale must be a number from 0 to 1"),
        ({"cfg_scale": "-0.1"}, "cfg_scale must be a number from 0 to 1"),
        ({"cfg_scale": "nan"}, "cfg_scale must be a number from 0 to 1"),
        ({"cfg_scale": "high"}, "cfg_scale must be a number from 0 to 1"),
        ({"sound": "maybe"}, "sound must be one of true, false, yes, no, 1, 0"),
    ],
)
def test_nohuman_rules(metadata, fragment):
    with pytest.raises(InvalidOptionError) as caught:
        nh(**metadata)
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("word", "expected"),
    [("true", True), ("YES", True), ("1", True), ("false", False), ("no", False), ("0", False)],
)
def test_nohuman_sound_words(word, expected):
    assert nh(sound=word)["sound"] is expected


def test_nohuman_typed_values_and_negative_prompt():
    options = nh(cfg_scale="0", duration="10", mode="HQ", negative_prompt=" blurry ")
    assert options["cfg_scale"] == 0.0
    assert options["duration"] == 10
    assert options["mode"] == "hq"
    assert options["negative_prompt"] == "blurry"


def test_prompt_is_capped():
    assert nh(prompt="x" * MAX_PROMPT_CHARS)["prompt"] == "x" * MAX_PROMPT_CHARS
    with pytest.raises(InvalidOptionError, match=f"prompt must be at most {MAX_PROMPT_CHARS} characters"):
        nh(prompt="x" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(InvalidOptionError, match="negative_prompt must be at most"):
        nh(negative_prompt="x" * (MAX_PROMPT_CHARS + 1))


def test_blank_prompt_falls_back_to_the_default():
    assert nh(prompt="   ")["prompt"] == DEFAULT_PROMPT


# The template's defaults: they apply to every image, whatever model it asks for.
TEMPLATE_DEFAULTS = {"duration": "5", "aspect_ratio": "16:9", "resolution": "720p", "mode": "fast"}


@pytest.mark.parametrize(("model", "duration"), [("veo3", 8), ("sora2", 10)])
def test_stack_duration_that_does_not_suit_the_model_gives_way_to_the_models_default(model, duration):
    options, warnings = resolve_options_with_warnings("nanobanana", TEMPLATE_DEFAULTS, {"video-model": model})
    assert options["video_model"] == model and options["duration"] == duration
    assert options["resolution"] == "720p"  # valid stack defaults still apply
    allowed = ", ".join(map(str, NANOBANANA_DURATIONS[model][0]))
    expected = (
        f"stack default ignored for this image: duration must be {allowed} seconds for nanobanana {model} "
        f"(got '5'); used {duration} instead"
    )
    assert warnings == [expected]


def test_stack_default_that_fits_the_model_gives_no_warning():
    options, warnings = resolve_options_with_warnings("nanobanana", TEMPLATE_DEFAULTS, {"video_model": "seedance2"})
    assert options["duration"] == 5 and warnings == []


def test_nohuman_with_a_4_3_stack_aspect_ratio_uses_16_9_and_warns():
    options, warnings = resolve_options_with_warnings("nohuman", {**TEMPLATE_DEFAULTS, "aspect_ratio": "4:3"}, {})
    assert options["aspect_ratio"] == "16:9"
    assert len(warnings) == 1 and "aspect_ratio must be one of 16:9, 9:16, 1:1 for nohuman (got '4:3')" in warnings[0]
    assert warnings[0].endswith("used '16:9' instead")


def test_several_invalid_stack_defaults_are_each_replaced():
    options, warnings = resolve_options_with_warnings(
        "nanobanana", {"duration": "5", "aspect_ratio": "4:3", "motion_intensity": "wild"}, {"video_model": "veo3"}
    )
    assert (options["duration"], options["aspect_ratio"], options["motion_intensity"]) == (8, "16:9", "medium")
    assert len(warnings) == 3


def test_invalid_stack_default_is_replaced_with_a_warning():
    options, warnings = resolve_options_with_warnings("nohuman", {"duration": "7"}, {})
    assert options["duration"] == 5
    assert "duration must be 5, 10" in warnings[0]
    assert resolve_options("nohuman", {"duration": "7"}, {})["duration"] == 5


def test_metadata_is_still_validated_strictly_against_the_stack_defaults():
    with pytest.raises(InvalidOptionError, match="duration must be 8 seconds for nanobanana veo3"):
        resolve_options_with_warnings("nanobanana", TEMPLATE_DEFAULTS, {"video_model": "veo3", "duration": "5"})
    with pytest.raises(InvalidOptionError, match="aspect_ratio must be one of 16:9"):
        resolve_options_with_warnings("nohuman", {"aspect_ratio": "4:3"}, {"aspect_ratio": "4:3"})


def test_unknown_provider():
    with pytest.raises(InvalidOptionError, match="provider must be one of"):
        resolve_options("acme", {}, {})


def test_validate_options_is_idempotent_on_typed_options():
    typed = nh(sound="no", cfg_scale="0.25")
    assert validate_options("nohuman", typed) == typed
    typed = nb(video_model="sora2", duration="15")
    assert validate_options("nanobanana", typed) == typed


# ---------------------------------------------------------------- issue 8: A7, B12

JAPANESE = "夕暮れの港、ゆっくりとズームイン"
EMOJI = "🌅 golden hour, slow push in 🚤"


def rfc2047(text: str, encoding: str = "b") -> str:
    from email.charset import BASE64, QP, Charset

    charset = Charset("utf-8")
    charset.header_encoding = BASE64 if encoding == "b" else QP
    return charset.header_encode(text)


@pytest.mark.parametrize("text", [JAPANESE, EMOJI])
@pytest.mark.parametrize("encoding", ["b", "q"])
def test_rfc2047_encoded_prompts_are_decoded(text, encoding):
    encoded = rfc2047(text, encoding)
    assert encoded.startswith("=?utf-8?") and encoded.isascii()
    assert nb(prompt=encoded)["prompt"] == text
    assert nh(prompt=encoded, negative_prompt=encoded)["negative_prompt"] == text


def test_plain_ascii_prompts_are_left_alone():
    assert nb(prompt="slow push in, golden hour")["prompt"] == "slow push in, golden hour"


def test_an_undecodable_encoded_word_is_refused():
    with pytest.raises(InvalidOptionError, match="RFC 2047"):
        nb(prompt="=?no-such-charset?B?aGVsbG8=?=")


def test_two_spellings_of_one_option_are_refused_not_last_wins():
    metadata = {"video-model": "veo3", "video_model": "sora2"}
    with pytest.raises(InvalidOptionError, match="'video-model' and 'video_model' both set the option video_model"):
        resolve_options("nanobanana", {}, metadata)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\n", "\x1b", "\x7f", "\x85"])
def test_prompts_with_control_characters_are_refused(char):
    with pytest.raises(InvalidOptionError, match="control characters"):
        nb(prompt=f"harbour{char}at dusk")
    with pytest.raises(InvalidOptionError, match="control characters"):
        nh(negative_prompt=f"blurry{char}grainy")


@pytest.mark.parametrize(
    "char", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200f"]
)
def test_prompts_with_bidi_controls_are_refused(char):
    with pytest.raises(InvalidOptionError, match="bidirectional"):
        nb(prompt=f"harbour {char}at dusk")
    # Also when smuggled in RFC 2047-encoded.
    with pytest.raises(InvalidOptionError, match="bidirectional"):
        nh(negative_prompt=rfc2047(f"blurry {char}"))


def test_a_refused_prompt_is_shown_with_its_hidden_characters_made_visible():
    from i2v.options import requested_options

    shown = requested_options("nohuman", {}, {"prompt": "harbour \u202eksud ta", "mode": "fast"})
    assert shown == {"prompt": "harbour \\u202eksud ta", "mode": "fast"}
