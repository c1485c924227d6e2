"""A run's `method:` section, filled from the method's config dataclass (its one home).

Later wins:

1. the dataclass's defaults (the paper's values: methods/<name>.py);
2. a field declared `follows("train.steps", ...)` takes that run key's value (with
   `settable=False` only that: steps 3 to 5 setting it are an error);
3. the presets' family sections, base class first: `dt:` sets every Decision-Transformer
   method, then `harmodt:` the HarmoDT ones (a class names its section in `preset_section`);
4. the method's YAML (configs/method/<name>.yaml): its name, and any deliberate override;
5. `<family>.<field>=` and `method.<field>=` on the command line, in that order.

Steps 2 and 3 write interpolations, so run identity sees which key a value copies
(bench.identity). The family sections then leave the resolved config: the method section holds
every value the method receives, once.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from typing import Any, cast

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from bench.errors import UserError, did_you_mean
from bench.registry import MethodConfig, check_field, config_classes, get_method


def family_sections() -> dict[str, type[MethodConfig]]:
    """Preset section name -> the config class that declares it."""
    sections: dict[str, type[MethodConfig]] = {}
    for config_cls in config_classes():
        for cls in config_cls.__mro__:
            section = vars(cls).get("preset_section")
            if section:
                sections[section] = cls
    return sections


Families = dict[str, type[MethodConfig]]  # `family_sections()`, computed once per composition


def is_method_owned(key: str, families: Families) -> bool:
    """Whether an override's key is a method option (`method.x`, `dt.x`): this module applies
    those, Hydra the rest."""
    head = key.partition(".")[0]
    return "." in key and (head == "method" or head in families)


def check_owned_overrides(overrides: Sequence[Override], method: str, families: Families) -> None:
    """Each `method.x=` names a field of `method`'s config, each `<family>.x=` one of the
    family's (which may not be `method`'s: a sweep over methods shares its overrides), with a
    value of the field's type."""
    for override in overrides:
        key = override.key_or_group
        head, _, field_name = key.partition(".")
        config_cls = get_method(method).config_cls if head == "method" else families[head]
        fields = {f.name: f for f in dataclasses.fields(config_cls)}
        if field_name not in fields:
            names = sorted(fields)
            raise UserError(
                f"unknown option {override.key_or_group!r} for {_whose_option(head, method)}"
                f"{did_you_mean(field_name, names, prefix=head + '.')}; "
                f"its options are: {', '.join(names)}"
            )
        metadata = fields[field_name].metadata
        if not metadata.get("settable", True):
            raise UserError(
                f"{key} is {metadata['follows']} for {_whose_option(head, method)}, not an option "
                f"of its own: set {metadata['follows']}= instead"
            )
        check_field(key, override.value(), typing.get_type_hints(config_cls)[field_name])


def _whose_option(head: str, method: str) -> str:
    return f"method {method!r}" if head == "method" else f"the {head}: family"


def fill(config: DictConfig, families: Families, overrides: Sequence[Override] = ()) -> None:
    """Replace `config.method` (its YAML: a name and overrides) by every option of the method,
    applying the method-owned `overrides` (see the module's order)."""
    OmegaConf.set_struct(config, False)
    for override in overrides:
        if override.key_or_group.partition(".")[0] in families:
            OmegaConf.update(config, override.key_or_group, override.value(), merge=False)
    for family, family_cls in families.items():  # a preset's typo must not pass unnoticed
        fields = sorted(f.name for f in dataclasses.fields(family_cls))
        unknown = sorted(set(config.get(family) or ()) - set(fields))
        if unknown:
            raise UserError(
                f"unknown option(s) {', '.join(unknown)} in a preset's {family}: section; "
                f"its options are: {', '.join(fields)}"
            )
    from_yaml = cast("dict[str, Any]", OmegaConf.to_container(config.method, resolve=False))
    assert isinstance(from_yaml, dict)
    config_cls = get_method(str(from_yaml["name"])).config_cls
    section: dict[str, Any] = {"name": from_yaml["name"]}
    for field in dataclasses.fields(config_cls):
        section[field.name] = _default(field)
    set_by: dict[str, tuple[str, Any]] = {}  # field -> (the source that sets it last, its value)
    for cls in reversed(config_cls.__mro__):
        own_section = vars(cls).get("preset_section")
        if not own_section or not config.get(own_section):
            continue
        preset = cast("dict[str, Any]", OmegaConf.to_container(config[own_section], resolve=False))
        for name, value in preset.items():
            section[name] = "${" + f"{own_section}.{name}" + "}"
            set_by[name] = (f"a preset's {own_section}: section", value)
    section.update(from_yaml)
    method_yaml = f"a method YAML selecting {from_yaml['name']!r}"
    set_by |= {name: (method_yaml, value) for name, value in from_yaml.items()}
    _refuse_set_copies(config_cls, str(from_yaml["name"]), set_by)
    config.method = OmegaConf.create(section)
    for override in overrides:
        if override.key_or_group.startswith("method."):
            OmegaConf.update(config, override.key_or_group, override.value(), merge=False)


def _refuse_set_copies(
    config_cls: type[MethodConfig], method: str, set_by: dict[str, tuple[str, Any]]
) -> None:
    """A `settable=False` field set by a preset's family section or the method's YAML, which the
    command line's check (`check_owned_overrides`) does not see. Setting it to the key it
    copies (`${train.steps}`) changes nothing and passes."""
    for field in dataclasses.fields(config_cls):
        if field.metadata.get("settable", True) or field.name not in set_by:
            continue
        where, value = set_by[field.name]
        if value == _default(field):
            continue
        follows = field.metadata["follows"]
        raise UserError(
            f"{where} sets {field.name}, which is {follows} for method {method!r}, not an "
            f"option of its own: set {follows}= instead"
        )


def drop_family_sections(resolved: dict[str, Any], families: Families) -> None:
    """The resolved config without the presets' family sections (the method section holds
    what the method receives)."""
    for section in families:
        resolved.pop(section, None)


def _default(field: dataclasses.Field[Any]) -> Any:
    if "follows" in field.metadata:
        return "${" + field.metadata["follows"] + "}"
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        raise TypeError(f"config field {field.name!r} has no default")
    return list(value) if isinstance(value, tuple) else value
