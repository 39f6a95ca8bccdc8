// Staff upload: sends files a few at a time with a progress bar, then polls each file's result.
(function () {
  "use strict";
  var root = document.getElementById("upload");
  if (!root) { return; }
  var form = document.getElementById("upload-form");
  var bar = document.getElementById("progress");
  var text = document.getElementById("progress-text");
  var tbody = document.querySelector("#results tbody");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var PER_REQUEST = 10;
  var rows = {};

  function label(name) { return root.dataset["label" + name.charAt(0).toUpperCase() + name.slice(1)]; }

  function row(key, name) {
    var tr = document.createElement("tr");
    [name, label("waiting"), ""].forEach(function (value) {
      var td = document.createElement("td");
      td.textContent = value;  // textContent: file names are never parsed as HTML
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    rows[key] = tr;
    return tr;
  }

  function show(tr, status, detail, state) {
    tr.children[1].textContent = status;
    tr.children[2].textContent = detail || "";
    tr.dataset.state = state;
  }

  // The error of a refused file, or the data-validation warnings of a stored one.
  function detail(item) {
    if (item.code) { return item.code + ": " + item.message; }
    return (item.warnings || []).map(function (warning) { return warning.code + ": " + warning.message; }).join("; ");
  }

  function send(files, loadedBefore, total) {
    return new Promise(function (resolve) {
      var data = new FormData();
      data.append("batch", root.dataset.batch);
      files.forEach(function (file) { data.append("files", file, file.webkitRelativePath || file.name); });
      var request = new XMLHttpRequest();
      request.open("POST", root.dataset.filesUrl);
      request.setRequestHeader("X-CSRFToken", csrf);
      request.upload.onprogress = function (event) {
        var percent = Math.round(100 * (loadedBefore + event.loaded) / total);
        bar.value = Math.min(percent, 100);
        text.textContent = label("uploading") + " " + bar.value + "%";
      };
      request.onload = function () {
        var body = null;
        try { body = JSON.parse(request.responseText); } catch (error) { body = null; }
        resolve({ ok: request.status === 200 && body, body: body, files: files });
      };
      request.onerror = function () { resolve({ ok: false, files: files }); };
      request.send(data);
    });
  }

  function poll() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        var pending = 0;
        body.items.forEach(function (item) {
          var tr = rows[item.id] || row(item.id, "");
          if (item.status === "received") { pending += 1; show(tr, label("processing"), "", "pending"); }
          else { show(tr, item.status_label, detail(item), item.status); }
        });
        text.textContent = pending ? label("processing") + " (" + pending + ")" : label("done");
        if (pending) { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = Array.prototype.slice.call(document.getElementById("files").files)
      .concat(Array.prototype.slice.call(document.getElementById("folder").files));
    if (!files.length) {
      text.textContent = label("noFiles");
      text.setAttribute("role", "alert");
      return;
    }
    text.removeAttribute("role");
    var total = files.reduce(function (sum, file) { return sum + file.size; }, 0) || 1;
    var loaded = 0;
    var chain = Promise.resolve();
    for (var i = 0; i < files.length; i += PER_REQUEST) {
      (function (group) {
        chain = chain.then(function () {
          return send(group, loaded, total).then(function (result) {
            loaded += group.reduce(function (sum, file) { return sum + file.size; }, 0);
            if (!result.ok) {
              group.forEach(function (file) { show(row("failed-" + file.name, file.name), label("failed"), "", "rejected"); });
              return;
            }
            result.body.items.forEach(function (item) {
              var tr = row(item.id || ("refused-" + item.name), item.name);
              if (item.status === "rejected") { show(tr, label("failed"), item.code + ": " + item.message, "rejected"); }
            });
          });
        });
      })(files.slice(i, i + PER_REQUEST));
    }
    chain.then(function () { bar.value = 100; poll(); });
  });
})();
