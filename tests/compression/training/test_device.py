"""Where training runs, on a machine without a GPU: auto is the CPU, cuda is one clear error,
and a CUDA out-of-memory error becomes one message naming the batch size to lower."""

import pytest
import torch

from slimline.compression.training.device import CPU, Accelerator, accelerator, out_of_memory_hint
from slimline.core.errors import InputError, ResourceError

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")


def test_auto_is_the_cpu_here_and_says_so():
    acc = accelerator("auto", "fp32")
    assert acc.device.type == "cpu" and not acc.cuda
    described = acc.describe()
    assert described["device"] == "cpu" and described["precision"] == "fp32"
    assert described["device_name"]


def test_cuda_without_a_gpu_is_one_input_error():
    with pytest.raises(InputError) as e:
        accelerator("cuda", "fp32")
    assert str(e.value).startswith("device: cuda, but torch sees no CUDA GPU")
    assert "use device: auto or cpu" in str(e.value)


def test_bf16_on_the_cpu_autocasts_the_forward_pass():
    acc = accelerator("cpu", "bf16")
    layer = torch.nn.Linear(4, 2)
    with acc.autocast():
        out = layer(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    with CPU.autocast():
        assert layer(torch.randn(3, 4)).dtype == torch.float32


def test_out_of_memory_names_the_section_to_lower():
    with pytest.raises(ResourceError) as e, out_of_memory_hint(CPU, "teacher"):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "out of GPU memory" in str(e.value) and "lower teacher.batch_size" in str(e.value)


def test_batches_are_pinned_for_cuda_only():
    # page-locked host batches are what make the non-blocking copies to a GPU asynchronous;
    # on the CPU pinning is a wasted copy (and warns without CUDA)
    assert not CPU.pin_memory and not accelerator("cpu", "fp32").pin_memory
    assert Accelerator(torch.device("cuda")).pin_memory
    y = torch.arange(4)
    assert CPU.batch(y) is y  # labels go through `batch` too: on the CPU, as they are
