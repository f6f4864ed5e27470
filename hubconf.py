"""torch.hub entrypoints: one per registry model, as torchvision's hubconf.py has one per model.

    import torch
    model = torch.hub.load("<owner>/fashion-zoo", "numfilters", pretrained=True)   # from GitHub
    model = torch.hub.load("path/to/fashion-zoo", "numfilters", source="local", pretrained=True)
    torch.hub.list("<owner>/fashion-zoo")   # every model of zoo/registry.py

`pretrained=True` loads the shipped state_dict (weights/, checked against its sha256) through
`zoo.load_model`, in eval mode; `pretrained=False` (torch.hub's default) a freshly initialised model
in train mode. The names are the registry's (`zoo.registry.list_models()`), not a list kept here.
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
