/** What every section of the sidebar shares: a collapsible <details> widget and the panel's services. */

import { Widget } from '@lumino/widgets';

import type { ApiClient } from '../api';
import { el, message } from '../dom';

export interface IPanelActions {
  openNotebook(path: string): void;
  openReport(runId: string, relative: string, title: string): void;
}

/** What the panel lends its sections: the API, JupyterLab actions, the banner and the refresh loop. */
export interface IPanelContext {
  readonly client: ApiClient;
  readonly actions: IPanelActions;
  /** Run an action (a POST), show its error in the banner if it fails, then reload everything. */
  act(action: () => Promise<unknown>): Promise<void>;
  /** Ask before an action; true when the user confirmed. */
  confirm(title: string, detail: string): Promise<boolean>;
  showError(text: string | null): void;
  /** Reload the run list now (filters or paging changed). */
  refreshRuns(): void;
  /** Expand a run in the Runs section (the one just started). */
  expandRun(runId: string): void;
}

/** One section: a <details class="ct-section ct-section-{id}"> with a summary and a body. */
export class Section extends Widget {
  readonly body: HTMLDivElement;

  constructor(
    readonly sectionId: string,
    title: string,
    protected readonly ctx: IPanelContext
  ) {
    const body = el('div', { class: 'ct-section-body' });
    super({
      node: el('details', { class: `ct-section ct-section-${sectionId}`, open: '' }, el('summary', {}, title), body)
    });
    this.body = body;
  }

  /** The value of a settled request; on failure, the error (after ``prefix``) in the body and null. */
  protected settled<T>(result: PromiseSettledResult<T>, prefix = ''): T | null {
    if (result.status === 'fulfilled') {
      return result.value;
    }
    this.body.replaceChildren(el('p', { class: 'ct-error' }, `${prefix}${message(result.reason)}`));
    return null;
  }
}
