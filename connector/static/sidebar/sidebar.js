/* Escalate sidebar: the buttons, and the conversation with Zendesk when the page runs inside it.
 *
 * The server renders every piece of ticket text (escaped); this file only moves server-rendered HTML
 * fragments into place and writes its own messages with textContent. The session token lives in
 * memory and travels in the Authorization header (third-party cookies are blocked in the iframe).
 */
(function () {
  'use strict';

  var body = document.body;
  var state = {
    token: body.getAttribute('data-token') || '',
    ticketId: body.getAttribute('data-ticket-id') || '',
    api: body.getAttribute('data-api') || '/sidebar/api',
    zaf: null
  };
  var slot = document.getElementById('panel-slot');
  var notice = document.getElementById('notice');

  function call(method, path, payload) {
    var options = {
      method: method,
      headers: { 'Authorization': 'Bearer ' + state.token, 'Accept': 'application/json, text/html' },
      credentials: 'omit',
      cache: 'no-store'
    };
    if (payload !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(payload);
    }
    return fetch(state.api + path, options).then(function (response) {
      // Each answer renews the session, so an agent who keeps the ticket open stays signed in.
      var renewed = response.headers.get('X-Escalate-Token');
      if (renewed) { state.token = renewed; }
      if (response.status === 401) {
        throw new Error('Your session has ended. Reopen the ticket to continue.');
      }
      return response;
    });
  }

  function errorOf(response) {
    return response.json().then(function (data) {
      return new Error((data && data.error) || ('Request failed (' + response.status + ')'));
    }, function () { return new Error('Request failed (' + response.status + ')'); });
  }

  function showNotice(message) {
    notice.textContent = message;
    notice.className = 'esc-notice c-callout c-callout--error';
    notice.hidden = false;
    resize();
  }

  function clearNotice() {
    notice.hidden = true;
    notice.textContent = '';
  }

  function ticketPath(suffix) {
    return '/tickets/' + encodeURIComponent(state.ticketId) + (suffix || '');
  }

  function loadPanel() {
    return call('GET', ticketPath('/panel')).then(function (response) {
      return response.text().then(function (html) {
        if (!response.ok && response.status !== 404) { throw new Error('The assessment could not be loaded.'); }
        slot.innerHTML = html; // server-rendered and escaped by the template
        decorate();
      });
    });
  }

  function decorate() {
    // Links in the package preview open outside the Zendesk iframe.
    var links = slot.querySelectorAll('.esc-package__body a[href]');
    for (var i = 0; i < links.length; i++) {
      links[i].setAttribute('target', '_blank');
      links[i].setAttribute('rel', 'noopener noreferrer');
    }
    labelCreateButton();
    resize();
  }

  function labelCreateButton() {
    var select = slot.querySelector('select[name="destination"]');
    var button = slot.querySelector('[data-test="create"]');
    if (!select || !button || button.disabled) { return; }
    var option = select.options[select.selectedIndex];
    var name = option ? option.text.replace(' (suggested)', '') : '';
    button.textContent = name ? 'Create ' + name + ' issue' : 'Create Jira issue';
  }

  function busy(form, on) {
    var button = form.querySelector('button[type="submit"]');
    form.setAttribute('aria-busy', on ? 'true' : 'false');
    if (button) { button.disabled = on; }
  }

  function submitCreate(form) {
    if (form.getAttribute('aria-busy') === 'true') { return; } // a second click while the first runs
    busy(form, true);
    clearNotice();
    var destination = form.querySelector('select[name="destination"]').value;
    var button = form.querySelector('button[type="submit"]');
    button.textContent = 'Creating…';
    call('POST', ticketPath('/issues'), { destination: destination }).then(function (response) {
      if (!response.ok) { return errorOf(response).then(function (e) { throw e; }); }
      return loadPanel();
    }).catch(function (error) {
      busy(form, false);
      labelCreateButton();
      showNotice(error.message);
    });
  }

  function submitDismiss(form) {
    if (form.getAttribute('aria-busy') === 'true') { return; }
    var reason = form.querySelector('select[name="reason"]').value;
    var note = form.querySelector('textarea[name="note"]').value;
    if (!reason) { showNotice('Choose a reason first.'); return; }
    busy(form, true);
    clearNotice();
    call('POST', ticketPath('/dismissals'), {
      destination: form.getAttribute('data-destination'), reason: reason, note: note
    }).then(function (response) {
      if (!response.ok) { return errorOf(response).then(function (e) { throw e; }); }
      return loadPanel();
    }).catch(function (error) {
      busy(form, false);
      showNotice(error.message);
    });
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    var action = form && form.getAttribute('data-action');
    if (!action) { return; }
    event.preventDefault();
    if (action === 'create') { submitCreate(form); }
    if (action === 'dismiss') { submitDismiss(form); }
  });
  document.addEventListener('change', function (event) {
    if (event.target && event.target.name === 'destination') { labelCreateButton(); }
  });
  document.addEventListener('toggle', resize, true);

  function resize() {
    if (!state.zaf) { return; }
    var height = Math.min(Math.max(document.documentElement.scrollHeight, 120), 2000);
    state.zaf.invoke('resize', { width: '100%', height: height + 'px' });
  }

  function inZendesk() {
    var query = new URLSearchParams(window.location.search);
    return query.has('origin') && query.has('app_guid') && typeof window.ZAFClient !== 'undefined';
  }

  function bindTicket(id) {
    return call('POST', '/session', { ticket_id: id }).then(function (response) {
      if (!response.ok) { return errorOf(response).then(function (e) { throw e; }); }
      return response.json();
    }).then(function (data) {
      state.token = data.token;
      state.ticketId = data.ticket_id;
      body.setAttribute('data-ticket-id', data.ticket_id);
      return loadPanel();
    });
  }

  function start() {
    if (inZendesk()) {
      state.zaf = window.ZAFClient.init();
      if (state.zaf) {
        // Coming back to the ticket's tab: the linked issue may have moved meanwhile.
        state.zaf.on('app.activated', function () {
          if (state.ticketId && state.token) { loadPanel().catch(function (error) { showNotice(error.message); }); }
        });
        state.zaf.get('ticket.id').then(function (data) {
          var id = String(data['ticket.id']);
          if (id === state.ticketId && slot.querySelector('#panel')) { decorate(); return null; }
          return bindTicket(id);
        }).catch(function (error) { showNotice(error.message || 'Zendesk did not say which ticket this is.'); });
        return;
      }
    }
    if (state.ticketId && !slot.querySelector('#panel')) {
      loadPanel().catch(function (error) { showNotice(error.message); });
      return;
    }
    if (!state.ticketId) {
      slot.textContent = 'Open a ticket in Zendesk to see its assessment.';
      return;
    }
    decorate();
  }

  start();
}());
