/** Drift: drift share per monitored batch (chart and table, with reports) and the latest batch's features. */

import type { IDrift } from '../api';
import { button, el } from '../dom';
import { formatMetric, formatShare, sparkline } from '../model';
import { IPanelContext, Section } from './section';

const SVG_NS = 'http://www.w3.org/2000/svg';

export class DriftSection extends Section {
  constructor(ctx: IPanelContext) {
    super('drift', 'Drift', ctx);
  }

  render(result: PromiseSettledResult<IDrift>): void {
    const drift = this.settled(result);
    if (drift === null) {
      return;
    }
    const body = this.body;
    if (drift.batches.length === 0) {
      body.replaceChildren(el('p', { class: 'ct-empty' }, 'No monitored batches yet.'));
      return;
    }
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 200 50');
    svg.setAttribute('class', 'ct-chart');
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute(
      'points',
      sparkline(
        drift.batches.map(b => b.drift_share),
        200,
        50
      )
    );
    svg.append(line);
    const threshold = drift.batches[drift.batches.length - 1].share_threshold;
    if (threshold !== null) {
      const t = document.createElementNS(SVG_NS, 'line');
      const y = String(50 - Math.min(1, threshold) * 50);
      for (const [k, v] of [
        ['x1', '0'],
        ['x2', '200'],
        ['y1', y],
        ['y2', y]
      ]) {
        t.setAttribute(k, v);
      }
      t.setAttribute('class', 'ct-threshold');
      svg.append(t);
    }
    const batches = el(
      'table',
      { class: 'ct-table ct-batches' },
      el('tr', {}, el('th', {}, 'batch'), el('th', {}, 'drift share'), el('th', {}, ''))
    );
    for (const b of drift.batches.slice().reverse()) {
      const report = b.report;
      const open = () => this.ctx.actions.openReport(b.run_id, report!, `Drift ${b.batch ?? b.run_id}`);
      batches.append(
        el(
          'tr',
          {},
          el('td', {}, b.batch ?? b.run_id),
          el('td', { class: b.dataset_drift ? 'ct-drifted' : '' }, formatShare(b.drift_share)),
          el('td', {}, report ? button('Report', open, 'ct-open-report') : null)
        )
      );
    }
    const nodes: Node[] = [svg, batches];
    if (drift.latest) {
      const columns = el(
        'table',
        { class: 'ct-table ct-columns' },
        el('tr', {}, el('th', {}, 'feature'), el('th', {}, 'test'), el('th', {}, 'score'), el('th', {}, 'drift'))
      );
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
      nodes.push(
        el('div', { class: 'ct-subtitle' }, `Latest batch: ${drift.latest.batch ?? drift.latest.run_id}`),
        columns
      );
    }
    body.replaceChildren(...nodes);
  }
}
