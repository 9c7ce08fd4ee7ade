/** Cost: runs, CPU time, archive bytes and money per pipeline and trigger kind, and each pipeline's last day. */

import type { ICostEntry, ICosts } from '../api';
import { el } from '../dom';
import { IPanelContext, Section } from './section';

function money(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(4) : '-';
}

function seconds(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(1) : '-';
}

function megabytes(bytes: number | null | undefined): string {
  return typeof bytes === 'number' && Number.isFinite(bytes) ? (bytes / 1e6).toFixed(2) : '-';
}

function cap(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : 'none';
}

function totalsTable(kind: string, entries: Record<string, ICostEntry>, currency: string): HTMLElement {
  const table = el(
    'table',
    { class: `ct-table ct-cost-${kind}` },
    el(
      'tr',
      {},
      el('th', {}, kind),
      el('th', {}, 'runs'),
      el('th', {}, 'cpu s'),
      el('th', {}, 'MB'),
      el('th', {}, currency)
    )
  );
  for (const [name, entry] of Object.entries(entries)) {
    table.append(
      el(
        'tr',
        { 'data-name': name },
        el('td', {}, name),
        el('td', {}, String(entry.runs)),
        el('td', {}, seconds(entry.cpu_s)),
        el('td', {}, megabytes(entry.archive_bytes)),
        el('td', {}, money(entry.cost))
      )
    );
  }
  return table;
}

/** The section's content for one GET /costs answer (every value as text). */
export function renderCosts(costs: ICosts): Node[] {
  const currency = String(costs.currency ?? '');
  const price =
    costs.cpu_hour_price === null || costs.cpu_hour_price === undefined
      ? 'No price set: cost.cpu_hour_price in ct.yaml prices kernel CPU hours.'
      : `${costs.cpu_hour_price} ${currency} per kernel CPU hour.`;
  const nodes: Node[] = [
    el('div', { class: 'ct-muted ct-cost-note' }, `${costs.runs_counted} run(s) counted. ${price}`),
    el('div', { class: 'ct-subtitle' }, 'Per pipeline'),
    totalsTable('pipeline', costs.pipelines ?? {}, currency),
    el('div', { class: 'ct-subtitle' }, 'Per trigger'),
    totalsTable('trigger', costs.triggers ?? {}, currency),
    el('div', { class: 'ct-subtitle' }, 'Last 24 hours')
  ];
  const day = el('ul', { class: 'ct-cost-day' });
  for (const [name, budget] of Object.entries(costs.budget ?? {})) {
    day.append(
      el(
        'li',
        { 'data-name': name },
        `${name}: ${budget.runs_last_24h} run(s), ${seconds(budget.cpu_s_last_24h)} cpu s, ` +
          `${money(budget.cost_last_24h)} ${currency}; caps: ${cap(budget.max_per_day)} rule-started run(s), ` +
          `${cap(budget.max_cost_per_day)} ${currency}`
      )
    );
  }
  nodes.push(day);
  return nodes;
}

export class CostSection extends Section {
  constructor(ctx: IPanelContext) {
    super('cost', 'Cost', ctx);
  }

  render(result: PromiseSettledResult<ICosts>): void {
    const costs = this.settled(result, 'Costs unavailable: ');
    if (costs === null) {
      return;
    }
    this.body.replaceChildren(...renderCosts(costs));
  }
}
