"""The review's HTTP interface on a real server (127.0.0.1, a free port), started once for the module."""

from __future__ import annotations

import http.client
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from tests.review.conftest import review_folder, tiny_model
from unetkit.api import review
from unetkit.config import ReviewConfig
from unetkit.data.io import read_array
from unetkit.review.session import ReviewSession

N_IMAGES = 6
SIZE = 32
UPLOAD_CAP_MB = 0.02  # 20 KiB: a 32 x 32 mask PNG is far below, the oversized body far above


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp("review-http")
    data = review_folder(root / "data", N_IMAGES, SIZE)
    (root / "secret.png").write_bytes(b"outside")
    config = ReviewConfig(model_path=str(tiny_model(root / "model.safetensors")), images_dir=str(data / "images"),
                          masks_dir=str(data / "masks"), out_dir=str(root / "labels"), device="cpu",
                          max_upload_mb=UPLOAD_CAP_MB)
    running = review(config)
    running.root = root
    running.config = config
    try:
        yield running
    finally:
        running.stop()


def _request(server, method: str, path: str, *, token: str | None = "query", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """`path` sent as is (no normalisation of '..'), with the token in the query, as a bearer, or not at all."""
    parts = urlsplit(server.url)
    headers = dict(headers or {})
    if token == "query":
        path += ("&" if "?" in path else "?") + f"token={server.token}"
    elif token == "bearer":
        headers["Authorization"] = f"Bearer {server.token}"
    elif token:
        path += f"?token={token}"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _items(server) -> list[dict]:
    status, body = _request(server, "GET", "/api/items")
    assert status == 200
    return json.loads(body)


@pytest.mark.parametrize("path", ["/", "/api/items", "/api/items/img_000/image", "/static/editor.js", "/api/train"])
def test_every_request_without_the_token_is_403(server, path: str) -> None:
    assert _request(server, "GET", path, token=None)[0] == 403
    assert _request(server, "GET", path, token="wrong")[0] == 403


def test_token_as_query_or_bearer_and_items_in_review_order(server) -> None:
    items = _items(server)
    assert _request(server, "GET", "/api/items", token="bearer") == (200, json.dumps(items, separators=(",", ":")).encode())
    assert sorted(item["id"] for item in items) == [f"img_{i:03d}" for i in range(N_IMAGES)]
    assert {(item["width"], item["height"]) for item in items} == {(SIZE, SIZE)}
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= item["iou"] <= 1.0 for item in items)  # --masks given: every image has an IoU


def test_image_and_prediction_are_pngs_of_the_image_size(server) -> None:
    for what in ("image", "prediction", "thumbnail"):
        status, body = _request(server, "GET", f"/api/items/img_001/{what}")
        assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    prediction = np.asarray(Image.open(io.BytesIO(_request(server, "GET", "/api/items/img_001/prediction")[1])))
    assert prediction.shape == (SIZE, SIZE)
    assert set(np.unique(prediction)) <= {0, 255}


def test_the_image_reduced_or_cut_into_a_region_for_the_editor(server) -> None:
    whole = np.asarray(Image.open(io.BytesIO(_request(server, "GET", "/api/items/img_001/image")[1])))
    assert whole.shape == (SIZE, SIZE)  # the synthetic images are gray: sent as one channel
    status, body = _request(server, "GET", "/api/items/img_001/image?region=8,4,16,40")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body))), whole[4:32, 8:24])  # clipped at 32
    reduced = np.asarray(Image.open(io.BytesIO(_request(server, "GET", "/api/items/img_001/image?reduce=4")[1])))
    assert reduced.shape == (SIZE // 4, SIZE // 4)
    assert abs(int(reduced[2, 3]) - whole[8:12, 12:16].mean()) <= 1  # a 4 x 4 block's mean
    for query, says in (("region=40,0,8,8", "outside"), ("region=1,2", "four integers"), ("reduce=0", "1..64"),
                        ("reduce=2&region=0,0,4,4", "either")):
        status, answer = _request(server, "GET", f"/api/items/img_001/image?{query}")
        assert status == 400 and says in answer.decode() and answer.decode().count("\n") == 1, (query, answer)


@pytest.mark.parametrize("key", ["..%2F..%2Fsecret", "../../secret", "..", "img_000%2F..%2F..%2Fsecret", "nope"])
def test_ids_outside_the_images_are_404_and_traversal_is_logged(server, key: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        status, body = _request(server, "GET", f"/api/items/{key}/image")
        put_status, _ = _request(server, "PUT", f"/api/items/{key}/mask", body=_png(np.zeros((SIZE, SIZE), np.uint8)))
    assert (status, put_status) == (404, 404)
    assert b"outside" not in body
    if key != "nope":
        assert any("refused id" in record.getMessage() for record in caplog.records)
    assert not (server.root / "labels" / "masks" / "secret.png").exists()


@pytest.mark.parametrize(("body", "says"), [
    (_png(np.zeros((SIZE + 1, SIZE), np.uint8)), "is 32x33 but the image is 32x32"),
    (_png(np.full((SIZE, SIZE), 7, np.uint8)), "not binary"),
    (b"not an image", "not a PNG"),
])
def test_a_wrong_upload_is_400_with_one_line(server, body: bytes, says: str) -> None:
    status, answer = _request(server, "PUT", "/api/items/img_002/mask", body=body)
    assert status == 400
    text = answer.decode()
    assert says in text and text.count("\n") == 1
    assert not (server.root / "labels" / "masks" / "img_002.png").exists()


def test_an_upload_over_the_cap_is_refused(server) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    assert _request(server, "PUT", "/api/items/img_002/mask", body=_png(noise))[0] == 413


def test_two_saves_keep_one_mask_and_one_history_entry(server) -> None:
    labels = server.root / "labels"
    given = (server.root / "data" / "masks" / "img_003.png").read_bytes()
    first = np.zeros((SIZE, SIZE), np.uint8)
    first[4:12, 4:20] = 255  # 8 x 16 = 128 pixels
    status, answer = _request(server, "PUT", "/api/items/img_003/mask", body=_png(first), headers={"X-Seconds-Spent": "4.5"})
    assert (status, json.loads(answer)["path"]) == (200, "masks/img_003.png")
    second = first.copy()
    second[20:24, 0:10] = 1  # 0/1 is binary too: 40 more pixels
    second[second > 0] = 1
    assert _request(server, "PUT", "/api/items/img_003/mask", body=_png(second))[0] == 200
    assert sorted(p.name for p in (labels / "masks").iterdir()) == ["img_003.png"]
    history = list((labels / "history" / "img_003").iterdir())
    assert len(history) == 1
    assert np.array_equal(read_array(history[0])[:, :, 0], first)
    assert np.array_equal(read_array(labels / "masks" / "img_003.png")[:, :, 0], second * 255)
    journal = [json.loads(line) for line in (labels / "review.jsonl").read_text().splitlines()]
    mine = [entry for entry in journal if entry["id"] == "img_003"]
    assert [entry["pixels_changed"] for entry in mine][1] == 40
    assert mine[0]["seconds"] == 4.5 and mine[1]["seconds"] is None
    assert (labels / "images" / "img_003.png").read_bytes() == (server.root / "data" / "images" / "img_003.png").read_bytes()
    assert (server.root / "data" / "masks" / "img_003.png").read_bytes() == given  # --masks is never written
    status, current = _request(server, "GET", "/api/items/img_003/mask")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(current))), second * 255)


def test_training_on_too_few_masks_is_refused_with_a_message(server) -> None:
    status, answer = _request(server, "POST", "/api/train")
    state = json.loads(answer)
    assert status == 200 and state["status"] == "refused" and "at least 4" in state["message"]


def test_starting_again_resumes_from_the_cache_and_the_saved_masks(server) -> None:
    _request(server, "PUT", "/api/items/img_004/mask", body=_png(np.zeros((SIZE, SIZE), np.uint8)))
    again = ReviewSession(server.config)  # predictions cached by the first start: none is computed
    assert again.cache.update(again.images, again.truths) == 0
    reviewed = {item["id"] for item in again.items() if item["reviewed"]}
    assert {"img_004"} <= reviewed
    assert [item["id"] for item in again.items()] == [item["id"] for item in _items(server)]
