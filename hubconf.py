"""torch.hub entrypoints: one per registry model (`zoo.registry.list_models()`), as torchvision's
hubconf.py has one per model; `pretrained=True` loads the shipped weights through `zoo.load_model`
(docs/export.md, "torch.hub").

    model = torch.hub.load("<owner>/fashion-zoo", "numfilters", pretrained=True)
"""
import zoo.pretrained as _pretrained
import zoo.registry as _registry

# torch.hub checks these import before it loads this file; zoo needs numpy besides torch.
dependencies = ["torch", "numpy"]


def _entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs):
        return _pretrained.load_model(name, pretrained=pretrained, **kwargs)

    entry = _registry.get_entry(name)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = (f"{entry.description} (dataset: {entry.dataset}).\n\n"
                          f"pretrained (bool): load the shipped weights (sha256 checked), in eval mode.")
    return entrypoint


# torch.hub lists every public callable of this module: only the models are.
globals().update({_name: _entrypoint(_name) for _name in _registry.list_models()})
