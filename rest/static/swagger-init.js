// Starts Swagger UI on the hub's OpenAPI document (a file of its own: the docs pages allow no inline script).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", withCredentials: true, deepLinking: true });
});
