/** Schedule: the daemon (start / stop), configured triggers, next fire times and recent decisions. */

import type { ITriggers } from '../api';
import { button, el } from '../dom';
import { decisionText } from '../model';
import { IPanelContext, Section } from './section';

export class ScheduleSection extends Section {
  constructor(ctx: IPanelContext) {
    super('schedule', 'Schedule', ctx);
  }

  render(result: PromiseSettledResult<ITriggers>): void {
    const t = this.settled(result);
    if (t === null) {
      return;
    }
    const body = this.body;
    const client = this.ctx.client;
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
          ? button('Stop daemon', () => void this.ctx.act(() => client.daemon('stop')), 'ct-daemon-stop')
          : button('Start daemon', () => void this.ctx.act(() => client.daemon('start')), 'ct-daemon-start')
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
    body.replaceChildren(
      status,
      el('div', { class: 'ct-subtitle' }, 'Triggers'),
      triggers,
      el('div', { class: 'ct-subtitle' }, 'Next fire times'),
      next,
      el('div', { class: 'ct-subtitle' }, 'Recent decisions'),
      decisions
    );
  }
}
