"""shop.example.com — the extension guide's example, complete (docs/extension-guide.md).

    python -m examples.shop --kubeconfig ~/.kplane/admin.kubeconfig --secure-port 8444
    kubectl get orders

- Order (namespaced, short name `ord`, category `shop`): a status subresource, printer columns,
  admission (durians are refused with 403; more than 50 need the `buyers` group, else 422; the
  item cannot change), and an `approve` action: POST .../orders/<name>/approve {"note": "..."}.
- Order is served in v1 (the storage version) and v1beta1 (`spec.product`/`spec.count`), converted.
- Stock (cluster-scoped, computed per request, read-only): what is left of each item once the
  approved orders are taken out of the inventory.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from kplane.extension import CREATE, UPDATE, ExtensionServer, Field, Forbidden, Invalid, resource

app = ExtensionServer(group="shop.example.com", version="v1", namespace="shop")

INVENTORY = {"apple": 100, "banana": 60, "cherry": 500}


class OrderStatus:
    phase: Literal["Pending", "Approved"] = "Pending"
    approvedBy: str | None = None
    note: str | None = None


@resource(app, kind="Order", plural="orders", scope="Namespaced", short_names=["ord"], categories=["shop"],
          status=OrderStatus, storage=True,
          printer_columns=[("Item", ".spec.item"), ("Qty", ".spec.qty", "integer"),
                           ("Phase", ".status.phase"),
                           ("Approved-By", ".status.approvedBy", "string", 1)])
class Order:
    """An order for one item of the shop."""

    item: Annotated[str, Field(description="what to buy", min_length=1)]
    qty: Annotated[int, Field(minimum=1, description="how many")] = 1


@resource(app, kind="Order", plural="orders", scope="Namespaced", short_names=["ord"], categories=["shop"],
          status=OrderStatus, version="v1beta1",
          printer_columns=[("Product", ".spec.product"), ("Count", ".spec.count", "integer")])
class OrderV1beta1:
    """v1beta1 spelled the fields product and count."""

    product: str
    count: int = 1


@app.converter(Order, "v1", "v1beta1")
def v1_to_v1beta1(order: dict[str, Any]) -> dict[str, Any]:
    spec = order.get("spec") or {}
    order["spec"] = {"product": spec.get("item"), "count": spec.get("qty", 1)}
    return order


@app.converter(Order, "v1beta1", "v1")
def v1beta1_to_v1(order: dict[str, Any]) -> dict[str, Any]:
    spec = order.get("spec") or {}
    order["spec"] = {"item": spec.get("product"), "qty": spec.get("count", 1)}
    return order


@app.admit(Order, operations=[CREATE, UPDATE])
def check(order: dict[str, Any], old: dict[str, Any] | None, user: Any) -> None:
    """Admission sees v1 (the storage version) whichever version the request used."""
    spec = order["spec"]
    if old is None:
        if spec["item"] == "durian":
            raise Forbidden("durians are not sold here")
        order["status"] = {"phase": "Pending"}  # mutating: a new order is Pending
    if old is not None and spec["item"] != old["spec"]["item"]:
        raise Invalid("spec.item", "field is immutable", spec["item"])
    if spec["qty"] > 50 and "buyers" not in user.groups:
        raise Invalid("spec.qty", "must not exceed 50 (unless you are a buyer)", spec["qty"])


@app.action(Order, "approve")
def approve(order: dict[str, Any], body: dict[str, Any], user: Any) -> dict[str, Any]:
    """POST .../orders/<name>/approve with {"note": "..."}: the order is Approved by the caller."""
    if (order.get("status") or {}).get("phase") == "Approved":
        return order
    order["status"] = {"phase": "Approved", "approvedBy": user.name, "note": body.get("note")}
    return order


@app.computed(kind="Stock", plural="stocks", scope="Cluster", categories=["shop"],
              printer_columns=[("Total", ".total", "integer"), ("Reserved", ".reserved", "integer"),
                               ("Available", ".available", "integer")])
async def stocks(namespace: str) -> list[dict[str, Any]]:
    reserved = dict.fromkeys(INVENTORY, 0)
    for order in await app.list(Order):
        spec, status = order.get("spec") or {}, order.get("status") or {}
        if status.get("phase") == "Approved" and spec.get("item") in reserved:
            reserved[spec["item"]] += int(spec.get("qty", 1))
    return [{"metadata": {"name": item}, "total": total, "reserved": reserved[item],
             "available": total - reserved[item]} for item, total in sorted(INVENTORY.items())]
