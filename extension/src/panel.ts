/**
 * The "Continuous Training" sidebar: composes one widget per section (sections/) and drives the one
 * polling loop. Runs reload on every tick; project, models, drift, schedule, pipeline track and
 * costs on every fifth.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PanelLayout, Widget } from '@lumino/widgets';

import { ApiClient, IProject } from './api';
import { button, el, message } from './dom';
import { DriftSection } from './sections/drift';
import { ModelsSection } from './sections/models';
import { CostSection } from './sections/cost';
import { PipelineSection } from './sections/pipeline';
import { RunFormSection } from './sections/runForm';
import { RunsSection } from './sections/runs';
import { ScheduleSection } from './sections/schedule';
import { IPanelActions, IPanelContext, Section } from './sections/section';

export type { IPanelActions } from './sections/section';

export class CTPanel extends Widget {
  readonly client: ApiClient;
  private readonly banner = el('div', { class: 'ct-banner', role: 'status' });
  private readonly title_ = el('div', { class: 'ct-project' });
  readonly runs: RunsSection;
  readonly runForm: RunFormSection;
  readonly models: ModelsSection;
  readonly drift: DriftSection;
  readonly schedule: ScheduleSection;
  readonly pipeline: PipelineSection;
  readonly cost: CostSection;
  private readonly sections: Section[];
  private project: IProject | null = null;
  private intervalMs = 3000;
  private timer: number | null = null;
  private ticks = 0;
  private busy = false;

  constructor(client: ApiClient, actions: IPanelActions) {
    super();
    this.client = client;
    this.id = 'ct-notebooks-panel';
    this.addClass('ct-panel');
    this.title.caption = 'Continuous Training';
    const ctx: IPanelContext = {
      client,
      actions,
      act: action => this.act(action),
      confirm: (title, detail) => this.confirm(title, detail),
      showError: text => this.showError(text),
      refreshRuns: () => void this.refresh(),
      expandRun: runId => this.runs.expand(runId)
    };
    this.runs = new RunsSection(ctx);
    this.runForm = new RunFormSection(ctx);
    this.models = new ModelsSection(ctx);
    this.drift = new DriftSection(ctx);
    this.schedule = new ScheduleSection(ctx);
    this.pipeline = new PipelineSection(ctx);
    this.cost = new CostSection(ctx);
    this.sections = [this.runs, this.runForm, this.models, this.drift, this.schedule, this.pipeline, this.cost];

    const header = new Widget({
      node: el(
        'div',
        { class: 'ct-panel-top' },
        el(
          'div',
          { class: 'ct-header' },
          el('h2', {}, 'Continuous Training'),
          button('Refresh', () => void this.refresh(true), 'ct-refresh')
        ),
        this.title_,
        this.banner
      )
    });
    const layout = new PanelLayout();
    this.layout = layout;
    layout.addWidget(header);
    for (const s of this.sections) {
      layout.addWidget(s);
    }
  }

  /** Apply the user's settings: refresh interval and runs per page (polling restarts if it was on). */
  configure(options: { refreshSeconds?: number; runsPageSize?: number }): void {
    if (options.runsPageSize && this.runs.setPageSize(options.runsPageSize)) {
      void this.refresh();
    }
    if (options.refreshSeconds && options.refreshSeconds * 1000 !== this.intervalMs) {
      this.intervalMs = options.refreshSeconds * 1000;
      if (this.timer !== null) {
        this.startPolling();
      }
    }
  }

  /** Poll while the panel is visible: runs every tick, the rest every fifth tick. */
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

  /** Reload what the sidebar shows; ``all`` also reloads project, models, drift, schedule, pipeline track, costs. */
  async refresh(all = false): Promise<void> {
    if (this.busy) {
      return;
    }
    this.busy = true;
    try {
      if (all || this.project === null || !this.project.found) {
        this.project = await this.client.project();
        this.renderProject(this.project);
      }
      if (!this.project.found) {
        this.showError(null);
        return;
      }
      await this.runs.load();
      if (all) {
        const [models, drift, triggers, pipeline, costs] = await Promise.allSettled([
          this.client.models(),
          this.client.drift(),
          this.client.triggers(),
          this.client.pipeline(),
          this.client.costs()
        ]);
        this.models.render(models);
        this.drift.render(drift);
        this.schedule.render(triggers);
        this.pipeline.render(pipeline);
        this.cost.render(costs);
      }
      this.showError(null);
    } catch (error) {
      this.showError(`The ct-notebooks API failed: ${message(error)}`);
    } finally {
      this.busy = false;
    }
  }

  private renderProject(project: IProject): void {
    const found = project.found;
    for (const s of this.sections) {
      s.setHidden(!found);
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
    const pipelines = project.pipelines ?? [];
    this.runs.setPipelines(pipelines.map(p => p.name));
    // rebuilt only when the pipelines or their parameters changed: what someone is typing stays
    this.runForm.setPipelines(pipelines);
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

  private async confirm(title: string, body: string): Promise<boolean> {
    const result = await showDialog({
      title,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Confirm' })]
    });
    return result.button.accept;
  }
}
