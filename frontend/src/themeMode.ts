import { createContext, useContext } from 'react';

export type Mode = 'light' | 'dark';
export const THEME_KEY = 'contimg.theme';

export interface ThemeModeValue {
  mode: Mode;
  toggle: () => void;
}

export const ThemeModeContext = createContext<ThemeModeValue>({ mode: 'light', toggle: () => {} });

export function useThemeMode(): ThemeModeValue {
  return useContext(ThemeModeContext);
}

export function initialMode(): Mode {
  try {
    const saved = localStorage.getItem(THEME_KEY);
    if (saved === 'light' || saved === 'dark') return saved;
  } catch {
    /* ignore */
  }
  if (typeof window !== 'undefined' && window.matchMedia?.('(prefers-color-scheme: dark)').matches) {
    return 'dark';
  }
  return 'light';
}
