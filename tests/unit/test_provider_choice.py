"""Both providers in one stack: the key secret per provider and the per-image choice."""

import json

import pytest

from i2v.errors import InvalidOptionError, ProviderNotConfiguredError
from i2v.options import split_provider
from i2v.providers import provider_key


def test_a_plain_key_serves_the_default_provider_only():
    assert provider_key(" nh_key ", "nohuman", "nohuman") == "nh_key"
    with pytest.raises(ProviderNotConfiguredError, match="provider nanobanana is not configured"):
        provider_key("nh_key", "nanobanana", "nohuman")


def test_a_json_secret_configures_either_or_both():
    both = json.dumps({"nohuman": "nh", "nanobanana": "nb"})
    assert provider_key(both, "nanobanana", "nohuman") == "nb"
    assert provider_key(both, "nohuman", "nohuman") == "nh"
    only_banana = json.dumps({"nanobanana": "nb"})
    with pytest.raises(ProviderNotConfiguredError, match=r"configured: nanobanana") as raised:
        provider_key(only_banana, "nohuman", "nohuman")
    assert raised.value.code == "ProviderNotConfigured"


def test_split_provider_takes_the_choice_out_of_the_options():
    assert split_provider({"Provider": "NanoBanana", "duration": "8"}, "nohuman") == ("nanobanana", {"duration": "8"})
    assert split_provider({"duration": "5"}, "nohuman") == ("nohuman", {"duration": "5"})
    with pytest.raises(InvalidOptionError, match="provider must be one of nanobanana, nohuman"):
        split_provider({"provider": "runway"}, "nohuman")
