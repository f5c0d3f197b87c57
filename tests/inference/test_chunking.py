import torch

from unetkit.inference.chunking import CacheSizedPasses, last_level_cache_bytes
from unetkit.models.unet import UNet


def test_passes_give_the_whole_batch_output_and_fill_half_the_cache():
    torch.manual_seed(0)
    net = UNet(start_neurons=4).eval()
    x = torch.randn(7, 1, 32, 32)
    # largest activation of one 32 x 32 sample: the top concatenation, 8 channels x 1024 px x 4 bytes
    passes = CacheSizedPasses(net, cache_bytes=2 * 3 * 8 * 1024 * 4)
    with torch.inference_mode():
        whole, split = net(x), passes(x)
    assert passes.per_pass(x) == 3  # half of the cache holds three samples' largest activation
    assert split.shape == (7, 1, 32, 32)
    assert torch.allclose(split, whole, atol=1e-5)


def test_one_sample_and_an_unknown_shape_run_as_they_come():
    net = UNet(start_neurons=4).eval()
    passes = CacheSizedPasses(net, cache_bytes=1)
    assert passes.per_pass(torch.zeros(1, 1, 16, 16)) is None
    with torch.inference_mode():
        out = passes(torch.zeros(3, 1, 16, 16))
    assert out.shape == (3, 1, 16, 16)
    assert passes.per_pass(torch.zeros(1, 1, 16, 16)) == 1


def test_cache_size_read_from_sysfs(tmp_path):
    for index, size in (("index0", "48K"), ("index2", "1024K"), ("index3", "16384K")):
        (tmp_path / index).mkdir()
        (tmp_path / index / "size").write_text(size + "\n")
    assert last_level_cache_bytes(tmp_path) == 16 * 2**20
    assert last_level_cache_bytes(tmp_path / "missing") == 32 * 2**20  # the fallback
