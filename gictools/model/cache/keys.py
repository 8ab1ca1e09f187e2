"""Cache keys, one helper per kind (scalar ints; the *_keys forms take numpy arrays).

- translation_key(dev, ev) = DeviceID << 32 | EventID: one (DeviceID, EventID) at one ITS
  (block path, latency-model list positions). Arrays: translation_keys (uint64),
  split_translation_keys.
- vm_key(its_index, dev, ev) = ITS index << 64 | translation key: one entry of a per-VM
  cache shared by every ITS (lru-v6.8, usage-v2). vm_key(0, d, e) == translation_key(d, e).
  Python ints only (more than 64 bits); vm_keys/block_vm_keys build them from arrays.
- its_key(dev, ev) = DeviceID << 16 | EventID: vgic_its_cache_key, the v6.10+ xarray index
  (VITS_TYPER_IDBITS = 16; an EventID above 0xFFFF aliases into the DeviceID bits).

numpy is imported by the array forms only: the model imports this module, the CLI's
start-up should not pay for numpy.
"""

_M32 = 0xFFFF_FFFF


def translation_key(device_id: int, event_id: int) -> int:
    return device_id << 32 | event_id


def split_translation_key(key: int) -> tuple[int, int]:
    return key >> 32 & _M32, key & _M32


def translation_keys(device_id, event_id):
    """uint64 array of translation keys from two ID arrays (or scalars)."""
    import numpy as np

    d = np.asarray(device_id).astype(np.uint64)
    e = np.asarray(event_id).astype(np.uint64)
    return (d << np.uint64(32)) | e


def split_translation_keys(keys):
    """(DeviceID, EventID) uint32 arrays of a translation-key array."""
    import numpy as np

    k = np.asarray(keys).astype(np.uint64)
    return (k >> np.uint64(32)).astype(np.uint32), (k & np.uint64(_M32)).astype(np.uint32)


def vm_key(its_index: int, device_id: int, event_id: int) -> int:
    return its_index << 64 | device_id << 32 | event_id


def split_vm_key(key: int) -> tuple[int, int, int]:
    """(ITS index, DeviceID, EventID) of a VM key."""
    return key >> 64, key >> 32 & _M32, key & _M32


def vm_keys(its_index, device_id, event_id) -> list:
    """Python-int VM keys from arrays (or scalars) of ITS index, DeviceID, EventID."""
    import numpy as np

    n = max(np.size(its_index), np.size(device_id), np.size(event_id))
    i, d, e = (
        np.broadcast_to(np.asarray(a), (n,)).tolist() for a in (its_index, device_id, event_id)
    )
    return [a << 64 | b << 32 | c for a, b, c in zip(i, d, e)]


def block_vm_keys(its_index: int, keys) -> list:
    """VM keys (Python ints) of an ITS's translation keys (uint64 array)."""
    ks = keys.tolist()
    if not its_index:
        return ks
    off = its_index << 64
    return [off | k for k in ks]


def its_key(device_id: int, event_id: int) -> int:
    # vgic_its_cache_key: no masking, so EventID bit 16 and up land in the DeviceID bits
    return device_id << 16 | event_id


def split_its_key(key: int) -> tuple[int, int]:
    """The (DeviceID, EventID) an its_key names for a lookup (IDs <= 0xFFFF)."""
    return key >> 16, key & 0xFFFF
