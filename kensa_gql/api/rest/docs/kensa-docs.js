// Swagger UI for /api/v1, from the files beside this one (swagger-ui-dist 5.35.0, Apache-2.0):
// no CDN, no validator badge (it would send the document to validator.swagger.io).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
