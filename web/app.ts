import {
  type AccountCard,
  type AccountDetail,
  ApiError,
  api,
  handleSessionLost,
  type PlanInfo,
  type SessionInfo,
  setCsrfToken,
} from './api.js'
import { type ChartRange, LoginsChart } from './chart.js'
import './app.css'

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const element = document.getElementById(id)
  if (element === null) {
    throw new Error(`missing element #${id}`)
  }
  return element as T
}

const number = new Intl.NumberFormat('en')
const dateTime = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'medium' })

function formatTime(iso: string | null): string {
  return iso === null ? 'never' : dateTime.format(new Date(iso))
}

// The detail of the selected account is reloaded at most this often while live updates arrive.
const DETAIL_REFRESH_MS = 500
const SEARCH_DELAY_MS = 200

const state = {
  cards: new Map<string, AccountCard>(),
  query: '',
  selected: undefined as string | undefined,
  detail: undefined as AccountDetail | undefined,
  plans: [] as PlanInfo[],
  events: undefined as EventSource | undefined,
  streamFailed: false,
  detailTimer: undefined as number | undefined,
  chart: undefined as LoginsChart | undefined,
}

/**
 * Runs work started by an event (a live update, a timer) whose failure no
 * caller awaits. A lost session has already sent the page to sign-in.
 */
function inBackground(work: Promise<unknown>): void {
  work.catch((error: unknown) => {
    if (error instanceof ApiError && error.status === 401) {
      return
    }
    showNotice(error instanceof ApiError ? error.message : 'Loading failed; reload the page.')
  })
}

// Page sections.

function showNotice(text: string): void {
  const notice = $('notice')
  notice.textContent = text
  notice.hidden = text === ''
}

function showSignIn(message = ''): void {
  state.events?.close()
  state.events = undefined
  state.selected = undefined
  setCsrfToken('')
  $('dashboard').hidden = true
  $('user-area').hidden = true
  $('sign-in').hidden = false
  showNotice(message)
  $<HTMLInputElement>('username').focus()
}

async function showDashboard(session: SessionInfo): Promise<void> {
  setCsrfToken(session.csrf_token)
  $('signed-in-as').textContent = `Signed in as ${session.username}`
  $('sign-in').hidden = true
  $('user-area').hidden = false
  $('dashboard').hidden = false
  state.plans = (await api<{ plans: PlanInfo[] }>('GET', '/plans')).plans
  openEventStream()
  await loadAccounts()
  await route()
}

// The account list.

function renderSeatBar(bar: HTMLProgressElement, card: AccountCard): void {
  bar.max = card.device_limit
  bar.value = Math.min(card.devices, card.device_limit)
  bar.classList.toggle('at-limit', card.at_limit)
  bar.textContent = `${card.devices} of ${card.device_limit}`
}

function renderCardItem(card: AccountCard): HTMLLIElement {
  const item = document.createElement('li')
  item.dataset.account = card.account_id
  const link = document.createElement('a')
  link.href = `#/accounts/${encodeURIComponent(card.account_id)}`
  if (card.account_id === state.selected) {
    link.setAttribute('aria-current', 'page')
  }

  const id = document.createElement('span')
  id.className = 'account-id'
  id.textContent = card.account_id
  const meta = document.createElement('span')
  meta.className = 'account-meta'
  meta.textContent = `${card.plan_name} · ${number.format(card.devices)} / ${number.format(card.device_limit)} devices${card.over_limit ? ` · over by ${number.format(card.overage)}` : ''}`
  const bar = document.createElement('progress')
  bar.setAttribute('aria-label', `Devices used by ${card.account_id}`)
  renderSeatBar(bar, card)

  link.append(id, meta, bar)
  item.append(link)
  return item
}

function renderAccountList(truncated = false): void {
  const list = $('account-list')
  const cards = [...state.cards.values()].sort((a, b) => (a.account_id < b.account_id ? -1 : 1))
  list.replaceChildren(...cards.map(renderCardItem))
  const count = `${cards.length} account${cards.length === 1 ? '' : 's'}`
  $('accounts-note').textContent =
    cards.length === 0
      ? state.query === ''
        ? 'No account has logged in yet.'
        : 'No account matches this search.'
      : truncated
        ? `Showing the first ${count}; narrow the search to see others.`
        : count
}

async function loadAccounts(): Promise<void> {
  const query = state.query
  const result = await api<{ accounts: AccountCard[]; truncated: boolean }>(
    'GET',
    `/accounts?q=${encodeURIComponent(query)}`,
  )
  if (query !== state.query) {
    return
  }
  state.cards = new Map(result.accounts.map((card) => [card.account_id, card]))
  renderAccountList(result.truncated)
}

// The selected account.

function chartRange(): ChartRange {
  const checked = document.querySelector<HTMLInputElement>('input[name="range"]:checked')
  return checked?.value === 'week' ? 'week' : 'day'
}

function renderSummary(card: AccountCard): void {
  $('account-title').textContent = `Account ${card.account_id}`
  $('stat-plan').textContent =
    `${card.plan_name} (up to ${number.format(card.device_limit)} devices)`
  $('stat-devices').textContent =
    `${number.format(card.devices)} of ${number.format(card.device_limit)}`
  $('stat-seats').textContent = number.format(card.seats_available)
  $('stat-logins').textContent = number.format(card.logins)
  renderSeatBar($<HTMLProgressElement>('seat-bar'), card)

  const overage = $('overage')
  overage.hidden = !card.over_limit
  overage.textContent = card.over_limit
    ? `Over the ${card.plan_name} limit by ${number.format(card.overage)} device${card.overage === 1 ? '' : 's'}. Their logins are stored.`
    : ''

  const upgrade = state.plans.find((plan) => plan.device_limit > card.device_limit)
  const prompt = $('upgrade-prompt')
  prompt.hidden = !(card.at_limit && upgrade !== undefined)
  if (upgrade !== undefined) {
    $('upgrade-text').textContent =
      `This account has reached its ${card.plan_name} limit of ${number.format(card.device_limit)} devices. Upgrade to ${upgrade.name} for up to ${number.format(upgrade.device_limit)} devices.`
    const button = $<HTMLButtonElement>('upgrade')
    button.textContent = `Upgrade to ${upgrade.name}`
    button.dataset.plan = upgrade.id
  }
}

function renderDetail(detail: AccountDetail): void {
  renderSummary(detail)
  state.chart ??= new LoginsChart($('chart'))
  state.chart.show(detail.logins_per_hour.first_hour, detail.logins_per_hour.counts, chartRange())

  const rows = detail.recent_devices.map((device) => {
    const row = document.createElement('tr')
    for (const text of [
      device.user_id,
      number.format(device.logins),
      formatTime(device.first_login),
      formatTime(device.last_login),
    ]) {
      const cell = document.createElement('td')
      cell.textContent = text
      row.append(cell)
    }
    return row
  })
  $('recent-devices').replaceChildren(...rows)

  const changes = detail.plan_changes.map((change) => {
    const item = document.createElement('li')
    item.textContent = `${formatTime(change.changed_at)}: ${change.from_plan} to ${change.to_plan} by ${change.changed_by}`
    return item
  })
  if (changes.length === 0) {
    const item = document.createElement('li')
    item.textContent = 'None: the account is on the plan every account starts on.'
    changes.push(item)
  }
  $('plan-changes').replaceChildren(...changes)
}

async function loadDetail(): Promise<void> {
  const accountId = state.selected
  if (accountId === undefined) {
    return
  }
  try {
    const detail = await api<AccountDetail>('GET', `/accounts/${encodeURIComponent(accountId)}`)
    if (accountId !== state.selected) {
      return
    }
    state.detail = detail
    renderDetail(detail)
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      $('account-title').textContent = `No account ${accountId}`
      return
    }
    throw error
  }
}

function scheduleDetailRefresh(): void {
  if (state.detailTimer !== undefined) {
    return
  }
  state.detailTimer = window.setTimeout(() => {
    state.detailTimer = undefined
    inBackground(loadDetail())
  }, DETAIL_REFRESH_MS)
}

async function route(): Promise<void> {
  const match = /^#\/accounts\/(.+)$/.exec(location.hash)
  const accountId = match?.[1] === undefined ? undefined : decodeURIComponent(match[1])
  const changed = accountId !== state.selected
  state.selected = accountId
  $('account').hidden = accountId === undefined
  renderAccountList()
  if (accountId === undefined) {
    return
  }
  if (changed) {
    $('plan-message').hidden = true
    $('upgrade-error').textContent = ''
  }
  await loadDetail()
  if (changed) {
    $('account-title').focus()
  }
}

// Live updates: the server pushes fresh cards of accounts that changed.

function setLiveStatus(text: string, live: boolean): void {
  const status = $('live-status')
  status.textContent = text
  status.classList.toggle('live', live)
}

function applyCards(cards: AccountCard[]): void {
  let listChanged = false
  for (const card of cards) {
    const visible = state.cards.has(card.account_id)
    const matches = card.account_id.toLowerCase().includes(state.query.toLowerCase())
    if (visible || matches) {
      state.cards.set(card.account_id, card)
      listChanged = true
    }
    if (card.account_id === state.selected) {
      renderSummary(card)
      scheduleDetailRefresh()
    }
  }
  if (listChanged) {
    renderAccountList()
  }
}

function openEventStream(): void {
  state.events?.close()
  const events = new EventSource('/dashboard/api/events')
  state.events = events

  events.addEventListener('open', () => {
    setLiveStatus('Live', true)
    // Changes made while the stream was down were never pushed; fetch them.
    if (state.streamFailed) {
      state.streamFailed = false
      inBackground(loadAccounts().then(loadDetail))
    }
  })
  events.addEventListener('accounts', (event) => {
    applyCards(
      (JSON.parse((event as MessageEvent<string>).data) as { accounts: AccountCard[] }).accounts,
    )
  })
  events.addEventListener('resync', () => {
    inBackground(loadAccounts().then(loadDetail))
  })
  events.addEventListener('error', () => {
    state.streamFailed = true
    setLiveStatus('Reconnecting…', false)
    if (events.readyState !== EventSource.CLOSED) {
      return
    }
    // The server refused the stream (the session ended); ask why, or try again.
    api<SessionInfo>('GET', '/session').then(
      () => window.setTimeout(openEventStream, 2000),
      (error: unknown) => {
        if (error instanceof ApiError && error.status === 401) {
          showSignIn(error.message)
        } else {
          window.setTimeout(openEventStream, 2000)
        }
      },
    )
  })
}

// Controls.

function wireControls(): void {
  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault()
    const username = $<HTMLInputElement>('username').value.trim()
    const password = $<HTMLInputElement>('password')
    const error = $('sign-in-error')
    error.textContent = ''
    if (username === '' || password.value === '') {
      error.textContent = 'Enter your user name and password.'
      return
    }
    try {
      const session = await api<SessionInfo>('POST', '/session', {
        username,
        password: password.value,
      })
      password.value = ''
      showNotice('')
      await showDashboard(session)
      $('main').focus()
    } catch (caught) {
      error.textContent =
        caught instanceof ApiError ? caught.message : 'Signing in failed; try again.'
      password.select()
    }
  })

  $('sign-out').addEventListener('click', async () => {
    try {
      await api('DELETE', '/session')
    } finally {
      location.hash = ''
      showSignIn('You have signed out.')
    }
  })

  let searchTimer: number | undefined
  $('search').addEventListener('input', () => {
    window.clearTimeout(searchTimer)
    searchTimer = window.setTimeout(() => {
      state.query = $<HTMLInputElement>('search').value.trim()
      inBackground(loadAccounts())
    }, SEARCH_DELAY_MS)
  })
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault()
    state.query = $<HTMLInputElement>('search').value.trim()
    inBackground(loadAccounts())
  })

  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="range"]')) {
    radio.addEventListener('change', () => {
      if (state.detail !== undefined) {
        renderDetail(state.detail)
      }
    })
  }

  $('upgrade').addEventListener('click', async () => {
    const button = $<HTMLButtonElement>('upgrade')
    const accountId = state.selected
    if (accountId === undefined) {
      return
    }
    button.disabled = true
    $('upgrade-error').textContent = ''
    try {
      const result = await api<{ message: string; account: AccountCard }>(
        'POST',
        `/accounts/${encodeURIComponent(accountId)}/plan`,
        { plan: button.dataset.plan },
      )
      const message = $('plan-message')
      message.textContent = `Upgraded: ${result.message}.`
      message.hidden = false
      applyCards([result.account])
      await loadDetail()
      message.focus()
    } catch (caught) {
      $('upgrade-error').textContent =
        caught instanceof ApiError ? caught.message : 'The upgrade failed; try again.'
    } finally {
      button.disabled = false
    }
  })

  window.addEventListener('hashchange', () => inBackground(route()))
}

async function start(): Promise<void> {
  wireControls()
  handleSessionLost((message) => showSignIn(message))
  try {
    await showDashboard(await api<SessionInfo>('GET', '/session'))
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showSignIn()
      return
    }
    showNotice('The dashboard could not load; reload the page.')
    throw error
  }
}

void start()
