import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';

function luminance(color: string): number {
  const [r = 0, g = 0, b = 0] = (color.match(/[\d.]+/g) ?? []).map(Number).map((value) => {
    const s = value / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function contrast(a: string, b: string): number {
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (light + 0.05) / (dark + 0.05);
}

/**
 * The open conversation in the list was told by a tint alone (1.22:1 against the list in the light theme, 1.36:1 in
 * the dark one: WCAG 1.4.1 and 1.4.11 ask for more than colour, or 3:1). It has a bar in the accent colour too. Under
 * forced colours (a contrast theme) that bar, a box shadow, was dropped and nothing told it apart: a thicker edge.
 */
describe('accessibility: states told by more than colour', function () {
  const app = useWebApp();

  // Forced colours (Windows' contrast themes) replace the colours and drop box shadows: a system colour stays.
  for (const scheme of ['light', 'dark', 'forced colours'] as const) {
    it(`${scheme === 'forced colours' ? scheme : `${scheme} theme`}: the open conversation in the list is told apart by more than a faint tint (WCAG 1.4.1 / 1.4.11)`, async () => {
      const ann = await app.person('Ann');
      const bob = await app.person('Bob');
      const cat = await app.person('Cat');
      await app.befriend(ann, bob, cat);
      await ann.client.conversations.createDirect(bob.id);
      await ann.client.conversations.createDirect(cat.id);
      const page = await app.open({
        context: scheme === 'forced colours' ? { forcedColors: 'active' } : { colorScheme: scheme },
      });
      await page.logIn(ann.username, PASSWORD);
      await page.openConversation('Bob');
      await page.composer.focus(); // focus away from the list: no focus ring on either entry
      const look = (title: string) =>
        page.conversationButton(title).evaluate((b) => {
          const s = getComputedStyle(b);
          return {
            background: s.backgroundColor,
            border: `${s.borderTopWidth} ${s.borderTopStyle} ${s.borderTopColor} ${s.borderLeftWidth} ${s.borderLeftColor}`,
            edge: `${s.borderTopWidth} ${s.borderTopStyle} ${s.borderLeftWidth} ${s.borderLeftStyle}`,
            weight: s.fontWeight,
            decoration: s.textDecorationLine,
            shadow: s.boxShadow,
            outline: s.outlineStyle,
            sidebar: getComputedStyle(document.querySelector('.sidebar')!).backgroundColor,
          };
        });
      const open = await look('Bob');
      const other = await look('Cat');
      const ratio = contrast(open.background, open.sidebar);
      // Under forced colours the theme picks every colour: only a cue other than colour counts there.
      const cues =
        scheme === 'forced colours'
          ? (['edge', 'weight', 'decoration', 'shadow', 'outline'] as const)
          : (['border', 'weight', 'decoration', 'shadow', 'outline'] as const);
      const otherCues = cues.filter((k) => open[k] !== other[k]);
      expect(
        { ratioAtLeast3: scheme !== 'forced colours' && ratio >= 3, otherCues },
        `open ${open.background} on ${open.sidebar}: ${ratio.toFixed(2)}:1; open ${JSON.stringify(open)} other ${JSON.stringify(other)}`,
      ).to.satisfy(
        (v: { ratioAtLeast3: boolean; otherCues: string[] }) => v.ratioAtLeast3 || v.otherCues.length > 0,
      );
    });
  }
});
