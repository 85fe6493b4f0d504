"""A stack AWS would refuse does not start locally either, with the message AWS would give."""

from pathlib import Path

import pytest

from i2v_local.aws_limits import StackLimitError
from i2v_local.stack import DEFAULT_TEMPLATE
from tests.e2e.helpers import start_stack

pytestmark = pytest.mark.e2e


def _template_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_TEMPLATE.read_text()
    assert old in text, old
    path = tmp_path / "template.yaml"
    path.write_text(text.replace(old, new, 1))
    # CodeUri and DefinitionUri are relative to the template.
    for name in ("functions", "layers", "statemachine"):
        (tmp_path / name).symlink_to(DEFAULT_TEMPLATE.parent / name)
    return path


def test_an_upper_case_bucket_name_stops_the_stack_before_anything_is_provisioned(tmp_path):
    template = _template_with(
        tmp_path,
        '- "i2v-input-${StackUuid}"',
        '- "i2v-Input-${StackUuid}"',
    )
    with pytest.raises(StackLimitError, match="Bucket name should not contain uppercase characters"):
        with start_stack("nanobanana", template=template, webhook=False):
            pass
