/**
 * @jest-environment jsdom
 */
import type { IPipelineTrack } from '../src/api';
import { PipelineSection, renderPipelineTrack } from '../src/sections/pipeline';
import { panelContext as context } from './context';

const EVIL = '<img src=x onerror="window.__pwned=1">';

function track(overrides: Partial<IPipelineTrack> = {}): IPipelineTrack {
  return {
    working: { version: 'e2d051196d7d0cbb', files: {}, commit: null },
    deployed: { version: 'a11ce0000000beef', files: {}, commit: '0123456789abcdef0123' },
    changed_files: ['notebooks/train.ipynb', EVIL],
    up_to_date: false,
    require_check: true,
    last_check: null,
    checks: [
      {
        id: 'c1',
        version: 'a11ce0000000beef',
        passed: true,
        actor: 'cli',
        started_at: '2026-12-01T10:00:00Z',
        deployed: true
      },
      {
        id: 'c2',
        version: 'e2d051196d7d0cbb',
        passed: false,
        actor: 'daemon',
        started_at: '2026-12-01T11:00:00Z',
        error: EVIL
      }
    ],
    ...overrides
  };
}

describe('Pipeline section', () => {
  it('shows working and deployed versions, that they differ, and the newest checks first', () => {
    const root = document.createElement('div');
    root.append(...renderPipelineTrack(track()));
    expect(root.querySelector('.ct-track-working td')!.textContent).toBe('e2d051196d7d0cbb');
    expect(root.querySelector('.ct-track-deployed td')!.textContent).toBe('a11ce0000000beef (commit 0123456789ab)');
    expect(root.querySelector('.ct-track-state')!.getAttribute('data-state')).toBe('differs');
    expect(Array.from(root.querySelectorAll('.ct-track-files li')).map(li => li.textContent)).toEqual([
      'notebooks/train.ipynb',
      EVIL
    ]);
    const checks = Array.from(root.querySelectorAll('.ct-check'));
    expect(checks.map(c => c.getAttribute('data-verdict'))).toEqual(['failed', 'passed']);
    expect(checks[0].textContent).toContain('e2d051196d7d0cbb failed');
    expect(checks[0].querySelector('.ct-error')!.textContent).toBe(EVIL);
    expect(checks[1].textContent).toContain('deployed');
    expect(root.querySelector('img')).toBeNull();
  });

  it('says when nothing is deployed and no check ran, and when the versions are the same', () => {
    const section = new PipelineSection(context());
    section.render({
      status: 'fulfilled',
      value: track({ deployed: null, changed_files: [], checks: [], require_check: false })
    });
    expect(section.node.querySelector('.ct-track-deployed td')!.textContent).toBe('none');
    expect(section.node.querySelector('.ct-track-state')!.getAttribute('data-state')).toBe('undeployed');
    expect(section.node.querySelector('.ct-no-checks')).not.toBeNull();
    section.render({ status: 'fulfilled', value: track({ up_to_date: true, changed_files: [] }) });
    expect(section.node.querySelector('.ct-track-state')!.getAttribute('data-state')).toBe('same');
    expect(section.node.querySelector('.ct-track-files')).toBeNull();
    section.render({ status: 'rejected', reason: new Error('boom') });
    expect(section.node.querySelector('.ct-error')!.textContent).toContain('boom');
  });
});
