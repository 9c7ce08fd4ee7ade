/**
 * @jest-environment jsdom
 */
import type { ICosts } from '../src/api';
import { CostSection, renderCosts } from '../src/sections/cost';
import { panelContext as context } from './context';

const EVIL = '<img src=x onerror="window.__pwned=1">';

function costs(overrides: Partial<ICosts> = {}): ICosts {
  return {
    pipelines: {
      train: { runs: 3, wall_s: 61.25, cpu_s: 40.5, archive_bytes: 7_500_000, cost: 0.0113 },
      [EVIL]: { runs: 1, wall_s: 1, cpu_s: 1, archive_bytes: 1, cost: null }
    },
    triggers: { manual: { runs: 2, wall_s: 30, cpu_s: 20, archive_bytes: 3_000_000, cost: null } },
    runs_counted: 4,
    currency: 'EUR',
    cpu_hour_price: 1,
    budget: {
      train: { runs_last_24h: 2, cpu_s_last_24h: 12.34, cost_last_24h: 0.0034, max_per_day: 4, max_cost_per_day: null }
    },
    ...overrides
  };
}

function host(nodes: Node[]): HTMLDivElement {
  const div = document.createElement('div');
  div.append(...nodes);
  return div;
}

describe('renderCosts', () => {
  it('shows each pipeline and trigger with runs, cpu seconds, megabytes and money', () => {
    const div = host(renderCosts(costs()));
    const train = div.querySelector('.ct-cost-pipeline tr[data-name="train"]');
    expect(Array.from(train?.querySelectorAll('td') ?? []).map(td => td.textContent)).toEqual([
      'train',
      '3',
      '40.5',
      '7.50',
      '0.0113'
    ]);
    const manual = div.querySelector('.ct-cost-trigger tr[data-name="manual"]');
    expect(manual?.lastElementChild?.textContent).toBe('-');
    expect(div.querySelector('.ct-cost-note')?.textContent).toContain('1 EUR per kernel CPU hour');
    expect(div.querySelector('.ct-cost-day li')?.textContent).toBe(
      'train: 2 run(s), 12.3 cpu s, 0.0034 EUR; caps: 4 rule-started run(s), none EUR'
    );
  });

  it('says how to set a price when none is set', () => {
    const div = host(renderCosts(costs({ cpu_hour_price: null })));
    expect(div.querySelector('.ct-cost-note')?.textContent).toContain('cost.cpu_hour_price');
  });

  it('renders names as text, never as markup', () => {
    const div = host(renderCosts(costs()));
    expect(div.querySelector('img')).toBeNull();
    expect(div.textContent).toContain(EVIL);
  });
});

describe('CostSection', () => {
  it('shows an error when the costs cannot be read', () => {
    const section = new CostSection(context());
    section.render({ status: 'rejected', reason: new Error('boom') });
    expect(section.body.querySelector('.ct-error')?.textContent).toContain('boom');
    section.render({ status: 'fulfilled', value: costs() });
    expect(section.body.querySelector('.ct-error')).toBeNull();
    expect(section.node.classList.contains('ct-section-cost')).toBe(true);
  });
});
