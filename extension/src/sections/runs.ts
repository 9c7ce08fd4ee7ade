/** Runs: the filtered, paged run list; a click expands a run (stages, notebooks, reports, resume, cancel). */

import type { IRunDetail, IRunSummary } from '../api';
import { button, el, message } from '../dom';
import { FINAL_STATUSES, formatDuration, isResumable, outcomeText, quarantineLines, statusIcon } from '../model';
import { IPanelContext, Section } from './section';

/** Runs fetched per page of the Runs list by default; "Show more" fetches one more page. */
export const RUN_PAGE = 30;
const RUN_STATUSES = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'blocked',
  'timed_out',
  'kernel_died',
  'cancelled',
  'damaged'
];

export class RunsSection extends Section {
  private runs: IRunSummary[] = [];
  private pageSize = RUN_PAGE;
  private runLimit = RUN_PAGE;
  private hasMore = false;
  private expanded: string | null = null;
  private detail: IRunDetail | null = null;
  private readonly runList = el('div', { class: 'ct-run-list' });
  private readonly pipelineFilter = el('select', { class: 'jp-mod-styled ct-filter-pipeline', title: 'pipeline' });
  private readonly statusFilter = el('select', { class: 'jp-mod-styled ct-filter-status', title: 'status' });

  constructor(ctx: IPanelContext) {
    super('runs', 'Runs', ctx);
    this.statusFilter.append(el('option', { value: '' }, 'any status'));
    for (const status of RUN_STATUSES) {
      this.statusFilter.append(el('option', { value: status }, status));
    }
    for (const filter of [this.pipelineFilter, this.statusFilter]) {
      filter.addEventListener('change', () => {
        this.runLimit = this.pageSize;
        this.ctx.refreshRuns();
      });
    }
    this.body.append(el('div', { class: 'ct-filters' }, this.pipelineFilter, this.statusFilter), this.runList);
  }

  /** Runs per page (the user's setting); true when it changed and the list needs reloading. */
  setPageSize(size: number): boolean {
    if (!size || size === this.pageSize) {
      return false;
    }
    this.pageSize = size;
    this.runLimit = size;
    return true;
  }

  /** The pipeline filter's choices; the chosen one is kept while it still exists. */
  setPipelines(names: string[]): void {
    const chosen = this.pipelineFilter.value;
    this.pipelineFilter.replaceChildren(el('option', { value: '' }, 'all pipelines'));
    for (const name of names) {
      this.pipelineFilter.append(el('option', { value: name }, name));
    }
    this.pipelineFilter.value = names.includes(chosen) ? chosen : '';
  }

  expand(runId: string): void {
    this.expanded = runId;
    this.detail = null;
  }

  /** Fetch the runs (and the expanded run's detail) and render them; API errors propagate to the panel. */
  async load(): Promise<void> {
    const page = await this.ctx.client.runs({
      limit: this.runLimit,
      pipeline: this.pipelineFilter.value || undefined,
      status: this.statusFilter.value || undefined
    });
    this.runs = page.runs;
    this.hasMore = page.has_more;
    if (this.expanded) {
      this.detail = await this.ctx.client.run(this.expanded).catch(() => null);
    }
    this.render();
  }

  private render(): void {
    const body = this.runList;
    if (this.runs.length === 0) {
      const filtered = this.pipelineFilter.value || this.statusFilter.value;
      body.replaceChildren(
        el(
          'p',
          { class: 'ct-empty' },
          filtered ? 'No runs match these filters.' : 'No runs yet: start one in the Run section.'
        )
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
        el(
          'span',
          { class: 'ct-run-trigger', title: run.reason },
          `${run.trigger}${run.reason ? ': ' + run.reason : ''}`
        ),
        el('span', { class: 'ct-run-duration' }, formatDuration(run.duration_s)),
        el('span', { class: 'ct-run-outcome' }, outcomeText(run))
      );
      row.addEventListener('click', () => void this.toggle(run.run_id));
      list.append(row);
      if (this.expanded === run.run_id) {
        list.append(this.renderDetail(run));
      }
    }
    body.replaceChildren(list);
    if (this.hasMore) {
      const more = () => {
        this.runLimit += this.pageSize;
        this.ctx.refreshRuns();
      };
      body.append(button('Show more', more, 'ct-more-runs'));
    }
  }

  private async toggle(runId: string): Promise<void> {
    this.expanded = this.expanded === runId ? null : runId;
    this.detail = null;
    if (this.expanded) {
      try {
        this.detail = await this.ctx.client.run(runId);
      } catch (error) {
        this.ctx.showError(message(error));
      }
    }
    this.render();
  }

  private renderDetail(run: IRunSummary): HTMLElement {
    const detail = this.detail && this.detail.run_id === run.run_id ? this.detail : null;
    const box = el(
      'li',
      { class: 'ct-run-detail' },
      el('div', { class: 'ct-muted' }, `run ${run.run_id} · ${run.status}`)
    );
    if (run.error) {
      box.append(el('pre', { class: 'ct-error' }, run.error));
    }
    if (run.outcome_reason) {
      box.append(el('div', { class: 'ct-muted' }, run.outcome_reason));
    }
    const client = this.ctx.client;
    const actions = el('div', { class: 'ct-actions' });
    if (isResumable(run)) {
      actions.append(button('Resume', () => void this.ctx.act(() => client.resume(run.run_id)), 'ct-resume'));
    }
    if (!FINAL_STATUSES.has(run.status)) {
      actions.append(button('Cancel', () => void this.ctx.act(() => client.cancel(run.run_id)), 'ct-cancel'));
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
        item.append(button('Open', () => this.ctx.actions.openNotebook(path), 'ct-open-notebook'));
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
      box.append(
        button(
          `Report ${file}`,
          () => this.ctx.actions.openReport(run.run_id, file, `Report ${run.run_id}`),
          'ct-open-report'
        )
      );
    }
    return box;
  }
}
