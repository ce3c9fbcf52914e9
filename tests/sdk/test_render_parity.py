"""Local renders equal server renders, over a corpus of templates.

`client.render()` renders a prompt without includes locally; that is only right if the
local sandbox gives the very string the server's render endpoint gives.
"""

from __future__ import annotations

import httpx
import pytest

from promptory import Prompt

from .conftest import API_KEY
from .legacy_server import LegacyPrompt, LegacyServer
from .render_corpus import TEMPLATES, VARIABLES


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_local_render_equals_the_legacy_server_render(legacy: LegacyServer, name: str) -> None:
    stored = legacy.add(LegacyPrompt(name=f"corpus_{name}", body=TEMPLATES[name]))
    answer = httpx.post(
        f"{legacy.url}/api/v1/prompts/{stored.id}/render",
        json={"variables": VARIABLES},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert answer.status_code == 200, answer.text
    local = Prompt.from_api(stored.to_json()).render(VARIABLES)
    assert local == answer.json()["rendered_body"]
