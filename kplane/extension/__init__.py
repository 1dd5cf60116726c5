"""kplane.extension: write a Kubernetes-style extension API server in Python.

    from kplane.extension import ExtensionServer, Forbidden, resource

    app = ExtensionServer(group="shop.example.com", version="v1")

    @resource(app, kind="Order", plural="orders", short_names=["ord"],
              printer_columns=[("Item", ".spec.item"), ("Qty", ".spec.qty", "integer")])
    class Order:
        item: str
        qty: int = 1

    @app.admit(Order)
    def check(order, old, user):
        if order["spec"]["qty"] > 100:
            raise Forbidden("orders above 100 need a human")

    if __name__ == "__main__":
        app.run()   # --kubeconfig K --secure-port P [--data-dir D] [--no-register]

Also: `@app.action(Order, "approve")` (a POST subresource), `@app.computed(...)` (read-only
resources evaluated per request), `@resource(..., version="v2")` with `@app.converter(Order,
"v1", "v2")` (several versions, one storage). See docs/extension-guide.md.
"""

from kplane.apiserver.auth import UserInfo
from kplane.extension.admission import CREATE, DELETE, UPDATE, Forbidden, Invalid
from kplane.extension.app import ExtensionServer, Options, ResourceHandle, resource
from kplane.extension.register import Registration, register, register_url
from kplane.extension.schema import Field, schema_of

__all__ = ["CREATE", "DELETE", "UPDATE", "ExtensionServer", "Field", "Forbidden", "Invalid", "Options",
           "Registration", "ResourceHandle", "UserInfo", "register", "register_url", "resource", "schema_of"]
