// franz desk: live pages. The desk says on /live (server-sent events) when tickets or problems changed; the page
// then fetches itself again and swaps its parts marked data-live, leaving alone the part someone is typing in.
// Fetched HTML is parsed into an inert document (no script in it runs) and was escaped by the server.
// A saved reply picked in a ticket's reply form lands in its text box to be read and edited before it is sent (the
// page's preview filled it for this ticket); without script, the form sends the pick and the desk fills it.
document.addEventListener('change', function (event) {
  var pick = event.target;
  if (!pick.matches || !pick.matches('form[data-action="comment"] select[name="saved"]')) return;
  var option = pick.options[pick.selectedIndex];
  var box = pick.form.querySelector('textarea[name="body"]');
  if (!option || !option.value || !box) return;
  box.value = option.getAttribute('data-text');
  pick.value = '';
  box.focus();
});
(function () {
  'use strict';
  if (!document.body || !document.body.hasAttribute('data-live') || !window.EventSource) return;
  var busy = false;
  var again = false;

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, 'text/html');
    document.title = fresh.title;
    fresh.querySelectorAll('[data-live][id]').forEach(function (part) {
      var old = document.getElementById(part.id);
      if (old && !old.contains(document.activeElement)) {
        old.replaceWith(document.importNode(part, true));
      }
    });
    document.body.setAttribute('data-refreshed', String(Date.now()));
  }

  var settled = [];
  // A desk that is busy for this person (429: their tabs fetch at once, two reads each) or for everyone (503) is
  // asked again a moment later, at a random point of a growing pause, so that many tabs do not ask together again
  // and none is left showing the page from before the change.
  var pause = 500;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var busyDesk = false;
    fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (response) {
        // A session that ended sends the page to sign-in: show that.
        if (response.redirected) { location.reload(); return null; }
        busyDesk = response.status === 429 || response.status === 503;
        return response.ok ? response.text() : null;
      })
      .then(function (html) { if (html) { swap(html); pause = 500; } })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); return; }
        if (busyDesk) {
          setTimeout(refresh, pause / 2 + Math.random() * pause);
          pause = Math.min(pause * 2, 8000);
          return;
        }
        settled.splice(0).forEach(function (done) { done(); });
      });
  }

  var source = null;
  function connect() {
    source = new EventSource('/live');
    source.addEventListener('change', refresh);
    // Whatever changed between drawing the page and the stream's start (or while a dropped stream was away), such
    // as numbers refreshed in the background right after the page was served, is caught up once it opens.
    // The page says it is connected once that catching up is done, so what reads it next reads a settled page.
    source.addEventListener('open', function () {
      settled.push(function () { document.body.setAttribute('data-connected', 'true'); });
      refresh();
    });
  }
  connect();
  // A browser holds six connections per site: a page navigated away from (or kept in the back-forward cache) lets
  // its stream go, and one shown again from that cache opens a new stream and catches up.
  window.addEventListener('pagehide', function () { source.close(); });
  window.addEventListener('pageshow', function (event) {
    if (event.persisted) { connect(); refresh(); }
  });
})();
