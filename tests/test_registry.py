"""Name families parsed in one place, and the facts each attack declares about itself."""

from __future__ import annotations

import pytest

import advkit.attacks  # registers the foolbox: family
import advkit.data  # registers npz: and folder:
import advkit.models  # registers timm:
from advkit.attacks import attack_info, get_attack, list_attacks
from advkit.data import load_dataset
from advkit.errors import AdvkitError
from advkit.models import create_model
from advkit.registry import Family, families, register_family, split_name

# The classification eval used before attacks declared it (advkit/eval/config.py, GRADIENT_FREE and
# is_gradient_free, at commit 93c41ec), kept verbatim as the oracle: the masking check and every report's
# "gradient_free" flag must not change.
_OLD_GRADIENT_FREE = {"square", "foolbox:BoundaryAttack", "foolbox:HopSkipJumpAttack",
                      "foolbox:GaussianBlurAttack", "foolbox:LinearSearchBlendedUniformNoiseAttack",
                      "foolbox:LinearSearchContrastReductionAttack", "foolbox:BinarySearchContrastReductionAttack",
                      "foolbox:SaltAndPepperNoiseAttack", "foolbox:InversionAttack"}


def _old_is_gradient_free(name: str) -> bool:
    return name in _OLD_GRADIENT_FREE or ("Noise" in name and name.startswith("foolbox:"))


# computed with the old code before the change, so a typo in the oracle above cannot hide a change
PINNED = {
    "fgsm": False, "pgd": False, "square": True,
    "foolbox:LinfPGD": False, "foolbox:L2CarliniWagnerAttack": False, "foolbox:LInfFMNAttack": False,
    "foolbox:BoundaryAttack": True, "foolbox:HopSkipJumpAttack": True, "foolbox:GaussianBlurAttack": True,
    "foolbox:L2AdditiveGaussianNoiseAttack": True, "foolbox:L2RepeatedAdditiveUniformNoiseAttack": True,
    "foolbox:LinfAdditiveUniformNoiseAttack": True, "foolbox:SaltAndPepperNoiseAttack": True,
    # these three read no gradient either, but were counted as white-box: kept so results do not change
    "foolbox:GenAttack": False, "foolbox:SpatialAttack": False, "foolbox:L2ContrastReductionAttack": False,
}


@pytest.mark.parametrize("name, gradient_free", sorted(PINNED.items()))
def test_gradient_free_pinned(name, gradient_free):
    assert attack_info(name).gradient_free is gradient_free
    assert get_attack(name).gradient_free is gradient_free


@pytest.mark.parametrize("name", list_attacks())
def test_every_attack_classified_as_before(name):
    assert attack_info(name).gradient_free is _old_is_gradient_free(name)


@pytest.mark.parametrize("name, params, label", [
    ("fgsm", {}, "FGSM"), ("pgd", {}, "PGD-10"), ("pgd", {"steps": 50, "restarts": 5}, "PGD-50x5"),
    ("pgd", {"steps": 20, "restarts": 1}, "PGD-20"), ("square", {}, "Square-1000"),
    ("square", {"n_queries": 100}, "Square-100"), ("foolbox:LInfFMNAttack", {"steps": 10}, "LInfFMNAttack"),
])
def test_labels_as_before(name, params, label):
    assert attack_info(name).label(params) == label


def test_attacks_declare_their_norms():
    assert attack_info("fgsm").norms == ("linf",)
    assert attack_info("pgd").norms == ("linf", "l2")
    assert attack_info("square").norms == ("linf", "l2")
    assert attack_info("foolbox:L2CarliniWagnerAttack").norms == ("l2",)
    assert attack_info("foolbox:L2ContrastReductionAttack").norms == ("l2",)
    assert attack_info("foolbox:L2FMNAttack").norms == ("l2",)
    assert attack_info("foolbox:GaussianBlurAttack").norms == ("linf", "l2", "l1", "l0")  # takes distance=
    required = {"foolbox:VirtualAdversarialAttack": {"steps": 1}}  # has no default for steps
    for name in list_attacks():
        assert get_attack(name, **required.get(name, {})).norm in attack_info(name).norms, name
    assert get_attack("foolbox:HopSkipJumpAttack", constraint="linf").norm == "linf"
    assert get_attack("foolbox:GaussianBlurAttack", distance="l1").norm == "l1"


def test_split_name_knows_the_families():
    assert split_name("pgd") == (None, "pgd")
    fam, rest = split_name("foolbox:LinfPGD")
    assert (fam.name, fam.kind, rest) == ("foolbox", "attack", "LinfPGD")
    fam, rest = split_name("timm:resnet18", kind="model")
    assert (fam.name, rest) == ("timm", "resnet18")
    fam, rest = split_name("npz:/a/b:c.npz", kind="dataset")
    assert (fam.name, rest) == ("npz", "/a/b:c.npz")  # only the first colon splits
    assert {f.name for f in families("dataset")} >= {"npz", "folder"}
    assert str(families("attack")[0]) == "foolbox:"


def test_unknown_family_is_one_clear_error():
    with pytest.raises(AdvkitError, match=r"unknown name family 'xyz:'.*known: .*foolbox:.*npz:.*timm:"):
        split_name("xyz:thing")
    with pytest.raises(AdvkitError, match=r"unknown attack family 'xyz:'.*known: foolbox:$"):
        get_attack("xyz:LinfPGD")
    with pytest.raises(AdvkitError, match=r"unknown dataset family 'xyz:'.*known: csv:, folder:, imagefolder:, npz:$"):
        load_dataset("xyz:/tmp/data")
    with pytest.raises(AdvkitError, match=r"unknown model family 'xyz:'.*known: py:, timm:, torchvision:$"):
        create_model("xyz:resnet18")
    with pytest.raises(AdvkitError, match=r"'timm:' names models, not attacks"):
        get_attack("timm:resnet18")


def test_duplicate_family_raises():
    with pytest.raises(KeyError, match="already registered"):
        register_family("foolbox", "attack")
    assert isinstance(families()[0], Family)


def test_families_are_not_parsed_by_hand():
    from pathlib import Path

    pkg = Path(advkit.attacks.__file__).resolve().parents[1]
    hand = ('"foolbox:', "'foolbox:", 'startswith("foolbox', 'startswith("timm', 'startswith("npz',
            'startswith("folder', 'partition(":")')
    hits = [f"{p.relative_to(pkg)}: {h}" for p in sorted(pkg.rglob("*.py")) for h in hand
            if h in p.read_text() and p.name != "registry.py"]
    assert hits == [], hits
