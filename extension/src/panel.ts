/** The "Continuous Training" sidebar: Runs, Run, Models, Drift and Schedule sections. */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ApiClient, ApiError, IDrift, IModels, IProject, IRunDetail, IRunSummary, ITriggers } from './api';
import {
  decisionText,
  FINAL_STATUSES,
  formatDuration,
  formatMetric,
  formatShare,
  initialText,
  isResumable,
  newIdempotencyKey,
  outcomeText,
  quarantineLines,
  sparkline,
  startRunBody,
  statusIcon,
  typeLabel,
  versionMetric
} from './model';

export interface IPanelActions {
  openNotebook(path: string): void;
  openReport(runId: string, relative: string, title: string): void;
}

type Child = Node | string | null | undefined | false;

/** Build an element; text only ever goes in as text (names from MLflow and data are never HTML). */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') {
      node.className = value;
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

function button(label: string, onClick: () => void, cls = ''): HTMLButtonElement {
  const b = el('button', { class: `jp-Button ct-button ${cls}`.trim(), type: 'button' }, label);
  b.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return b;
}

function section(id: string, title: string): { root: HTMLDetailsElement; body: HTMLDivElement } {
  const body = el('div', { class: 'ct-section-body' });
  const root = el('details', { class: `ct-section ct-section-${id}`, open: '' }, el('summary', {}, title), body);
  return { root, body };
}

function message(error: unknown): string {
  if (error instanceof ApiError) {
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Runs fetched per page of the Runs list by default; "Show more" fetches one more page. */
const RUN_PAGE = 30;
const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'blocked', 'timed_out', 'kernel_died', 'cancelled', 'damaged'];

export class CTPanel extends Widget {
  readonly client: ApiClient;
  private readonly actions: IPanelActions;
  private readonly banner = el('div', { class: 'ct-banner', role: 'status' });
  private readonly title_ = el('div', { class: 'ct-project' });
  private readonly sections = {
    runs: section('runs', 'Runs'),
    run: section('run', 'Run'),
    models: section('models', 'Models'),
    drift: section('drift', 'Drift'),
    schedule: section('schedule', 'Schedule')
  };
  private project: IProject | null = null;
  /** the pipelines the run form was built for: a refresh rebuilds it only when they changed */
  private formPipelines: string | null = null;
  private runs: IRunSummary[] = [];
  private pageSize = RUN_PAGE;
  private runLimit = RUN_PAGE;
  private intervalMs = 3000;
  private hasMore = false;
  private readonly runList = el('div', { class: 'ct-run-list' });
  private readonly pipelineFilter = el('select', { class: 'jp-mod-styled ct-filter-pipeline', title: 'pipeline' });
  private readonly statusFilter = el('select', { class: 'jp-mod-styled ct-filter-status', title: 'status' });
  private expanded: string | null = null;
  private detail: IRunDetail | null = null;
  private timer: number | null = null;
  private ticks = 0;
  private busy = false;

  constructor(client: ApiClient, actions: IPanelActions) {
    super();
    this.client = client;
    this.actions = actions;
    this.id = 'ct-notebooks-panel';
    this.addClass('ct-panel');
    this.title.caption = 'Continuous Training';
    const header = el(
      'div',
      { class: 'ct-header' },
      el('h2', {}, 'Continuous Training'),
      button('Refresh', () => void this.refresh(true), 'ct-refresh')
    );
    this.node.append(header, this.title_, this.banner);
    for (const s of Object.values(this.sections)) {
      this.node.append(s.root);
    }
    this.statusFilter.append(el('option', { value: '' }, 'any status'));
    for (const status of RUN_STATUSES) {
      this.statusFilter.append(el('option', { value: status }, status));
    }
    for (const filter of [this.pipelineFilter, this.statusFilter]) {
      filter.addEventListener('change', () => {
        this.runLimit = this.pageSize;
        void this.refresh();
      });
    }
    this.sections.runs.body.append(el('div', { class: 'ct-filters' }, this.pipelineFilter, this.statusFilter), this.runList);
  }

  /** Apply the user's settings: refresh interval and runs per page (polling restarts if it was on). */
  configure(options: { refreshSeconds?: number; runsPageSize?: number }): void {
    if (options.runsPageSize && options.runsPageSize !== this.pageSize) {
      this.pageSize = options.runsPageSize;
      this.runLimit = this.pageSize;
      void this.refresh();
    }
    if (options.refreshSeconds && options.refreshSeconds * 1000 !== this.intervalMs) {
      this.intervalMs = options.refreshSeconds * 1000;
      if (this.timer !== null) {
        this.startPolling();
      }
    }
  }

  /** Poll while the panel is attached: runs every tick, the rest every fifth tick. */
  startPolling(): void {
    this.stopPolling();
    this.timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh(this.ticks++ % 5 === 0);
      }
    }, this.intervalMs);
  }

  stopPolling(): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
      this.timer = null;
    }
  }

  dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  private showError(text: string | null): void {
    this.banner.textContent = text ?? '';
    this.banner.classList.toggle('ct-banner-error', Boolean(text));
  }

  /** Reload what the sidebar shows; ``all`` also reloads project, models, drift and schedule. */
  async refresh(all = false): Promise<void> {
    if (this.busy) {
      return;
    }
    this.busy = true;
    try {
      if (all || this.project === null || !this.project.found) {
        this.project = await this.client.project();
        this.renderProject();
      }
      if (!this.project.found) {
        this.showError(null);
        return;
      }
      const page = await this.client.runs({
        limit: this.runLimit,
        pipeline: this.pipelineFilter.value || undefined,
        status: this.statusFilter.value || undefined
      });
      this.runs = page.runs;
      this.hasMore = page.has_more;
      if (this.expanded) {
        this.detail = await this.client.run(this.expanded).catch(() => null);
      }
      this.renderRuns();
      if (all) {
        const [models, drift, triggers] = await Promise.allSettled([
          this.client.models(),
          this.client.drift(),
          this.client.triggers()
        ]);
        this.renderModels(models);
        this.renderDrift(drift);
        this.renderSchedule(triggers);
      }
      this.showError(null);
    } catch (error) {
      this.showError(`The ct-notebooks API failed: ${message(error)}`);
    } finally {
      this.busy = false;
    }
  }

  private renderProject(): void {
    const project = this.project!;
    const found = project.found;
    for (const s of Object.values(this.sections)) {
      s.root.hidden = !found;
    }
    if (!found) {
      this.title_.replaceChildren(
        el('p', { class: 'ct-empty ct-no-project' }, 'No ct-notebooks project found. ', project.message ?? '')
      );
      return;
    }
    this.title_.replaceChildren(
      el('span', { class: 'ct-project-name' }, `Project ${project.name}`),
      el('span', { class: 'ct-muted' }, ` · model ${project.model}`)
    );
    const chosen = this.pipelineFilter.value;
    this.pipelineFilter.replaceChildren(el('option', { value: '' }, 'all pipelines'));
    const pipelines = project.pipelines ?? [];
    for (const p of pipelines) {
      this.pipelineFilter.append(el('option', { value: p.name }, p.name));
    }
    this.pipelineFilter.value = pipelines.some(p => p.name === chosen) ? chosen : '';
    const shape = JSON.stringify(pipelines);
    if (shape !== this.formPipelines) {
      // rebuilding clears what someone is typing: only when the pipelines or their parameters changed
      this.formPipelines = shape;
      this.renderRunForm();
    }
  }

  // -- Runs -----------------------------------------------------------------------------------
  private renderRuns(): void {
    const body = this.runList;
    if (this.runs.length === 0) {
      const filtered = this.pipelineFilter.value || this.statusFilter.value;
      body.replaceChildren(
        el('p', { class: 'ct-empty' }, filtered ? 'No runs match these filters.' : 'No runs yet: start one in the Run section.')
      );
      return;
    }
    const list = el('ul', { class: 'ct-runs' });
    for (const run of this.runs) {
      const row = el(
        'li',
        { class: `ct-run ct-status-${run.status}`, 'data-run-id': run.run_id, 'data-status': run.status },
        el('span', { class: 'ct-run-icon', title: run.status }, statusIcon(run.status)),
        el('span', { class: 'ct-run-pipeline' }, run.pipeline),
        el('span', { class: 'ct-run-trigger', title: run.reason }, `${run.trigger}${run.reason ? ': ' + run.reason : ''}`),
        el('span', { class: 'ct-run-duration' }, formatDuration(run.duration_s)),
        el('span', { class: 'ct-run-outcome' }, outcomeText(run))
      );
      row.addEventListener('click', () => void this.toggleRun(run.run_id));
      list.append(row);
      if (this.expanded === run.run_id) {
        list.append(this.renderDetail(run));
      }
    }
    body.replaceChildren(list);
    if (this.hasMore) {
      const more = () => {
        this.runLimit += this.pageSize;
        void this.refresh();
      };
      body.append(button('Show more', more, 'ct-more-runs'));
    }
  }

  private async toggleRun(runId: string): Promise<void> {
    this.expanded = this.expanded === runId ? null : runId;
    this.detail = null;
    if (this.expanded) {
      try {
        this.detail = await this.client.run(runId);
      } catch (error) {
        this.showError(message(error));
      }
    }
    this.renderRuns();
  }

  private renderDetail(run: IRunSummary): HTMLElement {
    const detail = this.detail && this.detail.run_id === run.run_id ? this.detail : null;
    const box = el('li', { class: 'ct-run-detail' }, el('div', { class: 'ct-muted' }, `run ${run.run_id} · ${run.status}`));
    if (run.error) {
      box.append(el('pre', { class: 'ct-error' }, run.error));
    }
    if (run.outcome_reason) {
      box.append(el('div', { class: 'ct-muted' }, run.outcome_reason));
    }
    const actions = el('div', { class: 'ct-actions' });
    if (isResumable(run)) {
      actions.append(button('Resume', () => void this.act(() => this.client.resume(run.run_id)), 'ct-resume'));
    }
    if (!FINAL_STATUSES.has(run.status)) {
      actions.append(button('Cancel', () => void this.act(() => this.client.cancel(run.run_id)), 'ct-cancel'));
    }
    box.append(actions);
    if (!detail) {
      return box;
    }
    const stages = el('ul', { class: 'ct-stages' });
    for (const stage of detail.stages) {
      const item = el(
        'li',
        { class: `ct-stage ct-status-${stage.status}` },
        el('span', {}, `${statusIcon(stage.status)} ${stage.name}`),
        el('span', { class: 'ct-muted' }, formatDuration(stage.duration_s))
      );
      if (stage.notebook_path) {
        const path = stage.notebook_path;
        item.append(button('Open', () => this.actions.openNotebook(path), 'ct-open-notebook'));
      }
      if (stage.error) {
        item.append(el('div', { class: 'ct-error' }, `${stage.error.ename}: ${stage.error.evalue}`));
      }
      stages.append(item);
    }
    box.append(stages);
    for (const line of quarantineLines(detail.stages)) {
      box.append(el('div', { class: 'ct-quarantined' }, line));
    }
    for (const file of detail.files.filter(f => f.startsWith('reports/'))) {
      box.append(button(`Report ${file}`, () => this.actions.openReport(run.run_id, file, `Report ${run.run_id}`), 'ct-open-report'));
    }
    return box;
  }

  private async act(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
      this.showError(null);
    } catch (error) {
      this.showError(message(error));
    }
    await this.refresh(true);
  }

  // -- Run ------------------------------------------------------------------------------------
  private renderRunForm(): void {
    const body = this.sections.run.body;
    const pipelines = this.project?.pipelines ?? [];
    const select = el('select', { class: 'jp-mod-styled ct-pipeline' });
    for (const p of pipelines) {
      select.append(el('option', { value: p.name }, p.name));
    }
    const fieldsBox = el('div', { class: 'ct-fields' });
    const reason = el('input', { class: 'jp-mod-styled ct-reason', placeholder: 'reason (optional)' });
    let fields: { stage: string; name: string; initial: string; input: HTMLInputElement }[] = [];
    const build = () => {
      const pipeline = pipelines.find(p => p.name === select.value);
      fields = [];
      fieldsBox.replaceChildren();
      for (const stage of pipeline?.stages ?? []) {
        if (stage.parameters.length === 0) {
          continue;
        }
        const group = el('fieldset', { class: 'ct-stage-params' }, el('legend', {}, stage.name));
        for (const spec of stage.parameters) {
          const initial = initialText(spec);
          const input = el('input', {
            class: 'jp-mod-styled ct-param',
            'data-param': `${stage.name}.${spec.name}`,
            title: spec.help || spec.type
          });
          input.value = initial;
          fields.push({ stage: stage.name, name: spec.name, initial, input });
          const type = typeLabel(spec);
          group.append(el('label', {}, el('span', {}, `${spec.name} `, type ? el('small', { class: 'ct-muted ct-param-type' }, type) : null), input));
        }
        fieldsBox.append(group);
      }
    };
    select.addEventListener('change', build);
    let key = newIdempotencyKey();
    const start = button(
      'Start run',
      () =>
        void this.act(async () => {
          const payload = startRunBody(
            select.value,
            fields.map(f => ({ stage: f.stage, name: f.name, initial: f.initial, text: f.input.value })),
            reason.value
          );
          const started = await this.client.startRun(payload, key);
          key = newIdempotencyKey();
          this.expanded = started.run_id;
        }),
      'jp-mod-accept ct-start'
    );
    body.replaceChildren(el('label', {}, 'Pipeline ', select), fieldsBox, reason, start);
    build();
  }

  // -- Models ---------------------------------------------------------------------------------
  private renderModels(result: PromiseSettledResult<IModels>): void {
    const body = this.sections.models.body;
    if (result.status === 'rejected') {
      body.replaceChildren(el('p', { class: 'ct-error' }, `Registry unavailable: ${message(result.reason)}`));
      return;
    }
    const models = result.value;
    if (models.versions.length === 0) {
      body.replaceChildren(el('p', { class: 'ct-empty' }, `No versions of ${models.model} yet.`));
      return;
    }
    const table = el(
      'table',
      { class: 'ct-table ct-versions' },
      el('tr', {}, el('th', {}, 'version'), el('th', {}, models.primary_metric), el('th', {}, 'gate'), el('th', {}, ''))
    );
    for (const v of models.versions) {
      const champion = v.aliases.includes('champion');
      const row = el(
        'tr',
        { 'data-version': String(v.version) },
        el(
          'td',
          {},
          `v${v.version} `,
          champion ? el('span', { class: 'ct-badge ct-champion' }, 'champion') : null,
          v.aliases.includes('contender') ? el('span', { class: 'ct-badge' }, 'contender') : null
        ),
        el('td', { class: 'ct-metric' }, formatMetric(versionMetric(v, models.primary_metric))),
        el('td', { title: v.gate_reason ?? '' }, v.gate ?? '–'),
        el(
          'td',
          {},
          champion
            ? null
            : button('Promote', () => void this.confirmThen(`Make v${v.version} the champion?`, v.gate_reason ?? '', () => this.client.promote(v.version)), 'ct-promote')
        )
      );
      table.append(row);
    }
    const rollback = button(
      'Roll back champion',
      () => void this.confirmThen('Move champion back to the previous champion?', '', () => this.client.rollback()),
      'jp-mod-warn ct-rollback'
    );
    const audit = el('ul', { class: 'ct-audit' });
    for (const move of models.audit.slice(0, 8)) {
      audit.append(
        el('li', {}, `${move.at.slice(0, 19).replace('T', ' ')} ${move.alias}: v${move.from_version ?? '–'} → v${move.to_version ?? '–'} by ${move.actor} (${move.action}) ${move.reason}`)
      );
    }
    body.replaceChildren(table, rollback, el('div', { class: 'ct-subtitle' }, 'Who moved the alias'), audit);
  }

  private async confirmThen(title: string, detail: string, action: () => Promise<unknown>): Promise<void> {
    const result = await showDialog({
      title,
      body: detail || 'The alias move is recorded in the audit log.',
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Confirm' })]
    });
    if (result.button.accept) {
      await this.act(action);
    }
  }

  // -- Drift ----------------------------------------------------------------------------------
  private renderDrift(result: PromiseSettledResult<IDrift>): void {
    const body = this.sections.drift.body;
    if (result.status === 'rejected') {
      body.replaceChildren(el('p', { class: 'ct-error' }, message(result.reason)));
      return;
    }
    const drift = result.value;
    if (drift.batches.length === 0) {
      body.replaceChildren(el('p', { class: 'ct-empty' }, 'No monitored batches yet.'));
      return;
    }
    const svgNs = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(svgNs, 'svg');
    svg.setAttribute('viewBox', '0 0 200 50');
    svg.setAttribute('class', 'ct-chart');
    const line = document.createElementNS(svgNs, 'polyline');
    line.setAttribute('points', sparkline(drift.batches.map(b => b.drift_share), 200, 50));
    svg.append(line);
    const threshold = drift.batches[drift.batches.length - 1].share_threshold;
    if (threshold !== null) {
      const t = document.createElementNS(svgNs, 'line');
      const y = String(50 - Math.min(1, threshold) * 50);
      for (const [k, v] of [['x1', '0'], ['x2', '200'], ['y1', y], ['y2', y]]) {
        t.setAttribute(k, v);
      }
      t.setAttribute('class', 'ct-threshold');
      svg.append(t);
    }
    const batches = el('table', { class: 'ct-table ct-batches' }, el('tr', {}, el('th', {}, 'batch'), el('th', {}, 'drift share'), el('th', {}, '')));
    for (const b of drift.batches.slice().reverse()) {
      const report = b.report;
      batches.append(
        el(
          'tr',
          {},
          el('td', {}, b.batch ?? b.run_id),
          el('td', { class: b.dataset_drift ? 'ct-drifted' : '' }, formatShare(b.drift_share)),
          el('td', {}, report ? button('Report', () => this.actions.openReport(b.run_id, report, `Drift ${b.batch ?? b.run_id}`), 'ct-open-report') : null)
        )
      );
    }
    const nodes: Node[] = [svg, batches];
    if (drift.latest) {
      const columns = el('table', { class: 'ct-table ct-columns' }, el('tr', {}, el('th', {}, 'feature'), el('th', {}, 'test'), el('th', {}, 'score'), el('th', {}, 'drift')));
      for (const c of drift.latest.columns) {
        columns.append(
          el(
            'tr',
            {},
            el('td', {}, c.column),
            el('td', {}, c.stattest ?? ''),
            el('td', {}, formatMetric(c.score ?? null)),
            el('td', { class: c.drifted ? 'ct-drifted' : '' }, c.drifted ? 'yes' : 'no')
          )
        );
      }
      nodes.push(el('div', { class: 'ct-subtitle' }, `Latest batch: ${drift.latest.batch ?? drift.latest.run_id}`), columns);
    }
    body.replaceChildren(...nodes);
  }

  // -- Schedule -------------------------------------------------------------------------------
  private renderSchedule(result: PromiseSettledResult<ITriggers>): void {
    const body = this.sections.schedule.body;
    if (result.status === 'rejected') {
      body.replaceChildren(el('p', { class: 'ct-error' }, message(result.reason)));
      return;
    }
    const t = result.value;
    const daemon = t.daemon;
    const status = el(
      'div',
      { class: 'ct-daemon' },
      `Daemon: ${daemon.available ? (daemon.running ? 'running' : 'stopped') : 'not available'}`,
      daemon.message ? el('div', { class: 'ct-muted' }, daemon.message) : null
    );
    if (daemon.available) {
      status.append(
        daemon.running
          ? button('Stop daemon', () => void this.act(() => this.client.daemon('stop')), 'ct-daemon-stop')
          : button('Start daemon', () => void this.act(() => this.client.daemon('start')), 'ct-daemon-start')
      );
    }
    const names = Object.keys(t.config);
    const triggers = names.length
      ? el('pre', { class: 'ct-config' }, JSON.stringify(t.config, null, 2))
      : el('p', { class: 'ct-empty' }, 'No triggers configured in ct.yaml.');
    const next = el('ul', { class: 'ct-next' });
    for (const item of t.next_fire_times) {
      next.append(el('li', {}, Object.values(item).map(String).join(' · ')));
    }
    const decisions = el('ul', { class: 'ct-decisions' });
    for (const d of t.decisions.slice(0, 10)) {
      const run = d.run as Record<string, unknown> | null | undefined;
      const blocked = run?.status === 'blocked' ? ' ct-decision-blocked' : '';
      decisions.append(el('li', { class: `ct-decision${blocked}` }, decisionText(d)));
    }
    body.replaceChildren(status, el('div', { class: 'ct-subtitle' }, 'Triggers'), triggers, el('div', { class: 'ct-subtitle' }, 'Next fire times'), next, el('div', { class: 'ct-subtitle' }, 'Recent decisions'), decisions);
  }
}
