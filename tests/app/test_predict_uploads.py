"""predict_uploads: what the Classify page runs on each upload: one batch, order kept, size limit first."""

from __future__ import annotations

from cnnlab.bundle import load_bundle
from cnnlab.predict import predict_sources, predict_uploads
from tests.app.conftest import encode, xray_like


def test_uploads_in_order_with_limit_and_errors(app_bundle):
    bundle = load_bundle(app_bundle)
    small, big = encode(xray_like(0, 32)), encode(xray_like(1, 400))
    assert len(small) < 2000 < len(big)
    out = predict_uploads(bundle, [("big.png", big), ("bad.png", b"nope"), ("ok.png", small)],
                          max_mb=2000 / 2**20)  # fmt: skip
    assert [p.source for p in out] == ["big.png", "bad.png", "ok.png"]
    assert out[0].error.startswith("file is 0.") and "upload limit" in out[0].error
    assert out[1].error == "not a recognised image format"
    alone = predict_sources(bundle, [small], ["ok.png"])[0]
    assert out[2].error is None and out[2].to_dict() == alone.to_dict()
    unlimited = predict_uploads(bundle, [("big.png", big)])
    assert unlimited[0].error is None and unlimited[0].label in bundle.classes
